package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Authentication of the control port (control-spec §3.5 AUTHENTICATE,
// §3.24 AUTHCHALLENGE; tor control_auth.c).

// Sizes and HMAC keys of SAFECOOKIE, exactly as Tor has them.
const (
	cookieLen = 32
	nonceLen  = 32

	safeCookieServerKey     = "Tor safe cookie authentication server-to-controller hash"
	safeCookieControllerKey = "Tor safe cookie authentication controller-to-server hash"
)

// writeControlCookie writes a fresh 32-byte cookie to path with mode 0600
// (writeSecretFile: atomic) and returns it. Tor rewrites its cookie at
// every start too.
func writeControlCookie(path string) ([]byte, error) {
	cookie := make([]byte, cookieLen)
	if _, err := rand.Read(cookie); err != nil {
		return nil, fmt.Errorf("control cookie: %w", err)
	}
	if err := writeSecretFile(path, cookie); err != nil {
		return nil, fmt.Errorf("control cookie: %w", err)
	}
	return cookie, nil
}

func hmacSHA256(key string, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, []byte(key))
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// safeCookieHashes returns the server hash (sent in AUTHCHALLENGE's reply)
// and the client hash (expected in the following AUTHENTICATE), both over
// cookie | client nonce | server nonce.
func safeCookieHashes(cookie, clientNonce, serverNonce []byte) (server, client []byte) {
	return hmacSHA256(safeCookieServerKey, cookie, clientNonce, serverNonce),
		hmacSHA256(safeCookieControllerKey, cookie, clientNonce, serverNonce)
}

// authArg decodes AUTHENTICATE's argument: a QuotedString (a password, as
// Bitcoin Core and lnd send it) or hex (a cookie, a SAFECOOKIE client hash
// or a hex-encoded password), or nothing. Errors are Tor's 551 texts.
func authArg(rest string) ([]byte, *controlError) {
	rest = strings.Trim(rest, " ")
	if rest == "" {
		return nil, nil
	}
	if strings.HasPrefix(rest, `"`) {
		v, after, err := unquote(rest)
		if err != nil || strings.Trim(after, " ") != "" {
			return nil, ctlErr(551, "Invalid quoted string.  You need to put the password in double quotes.")
		}
		return []byte(v), nil
	}
	b, err := hex.DecodeString(rest)
	if err != nil {
		return nil, ctlErr(551, "Invalid hexadecimal encoding.  Maybe you tried a plain text password?  If so, the standard requires that you put it in double quotes.")
	}
	return b, nil
}

// passwordMatches compares a given password with the configured one in
// constant time (over their SHA-256, so the length leaks nothing either).
func passwordMatches(given []byte, want string) bool {
	if want == "" {
		return false
	}
	a, b := sha256.Sum256(given), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}
