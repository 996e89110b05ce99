package torproc

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
)

// SAFECOOKIE keys (control-spec §3.24 AUTHCHALLENGE).
const (
	serverHashKey = "Tor safe cookie authentication server-to-controller hash"
	clientHashKey = "Tor safe cookie authentication controller-to-server hash"
)

// authenticate authenticates c with the cookie in cookieFile: SAFECOOKIE
// when tor offers it (it proves tor knows the cookie before we reveal
// anything), else COOKIE.
func (c *controlConn) authenticate(ctx context.Context, cookieFile string) error {
	r, err := c.do(ctx, "PROTOCOLINFO", "PROTOCOLINFO 1")
	if err != nil {
		return err
	}
	var methods []string
	for _, l := range r {
		if rest, ok := strings.CutPrefix(l.Text, "AUTH "); ok {
			methods = strings.Split(params(rest)["METHODS"], ",")
		}
	}
	cookie, err := os.ReadFile(cookieFile)
	if err != nil {
		return fmt.Errorf("torproc: read control cookie: %w", err)
	}
	if len(cookie) != 32 {
		return fmt.Errorf("torproc: control cookie %s is %d bytes, want 32", cookieFile, len(cookie))
	}
	has := func(m string) bool {
		for _, x := range methods {
			if x == m {
				return true
			}
		}
		return false
	}
	switch {
	case has("SAFECOOKIE"):
		var nonce [32]byte
		rand.Read(nonce[:])
		r, err := c.do(ctx, "AUTHCHALLENGE", "AUTHCHALLENGE SAFECOOKIE "+hex.EncodeToString(nonce[:]))
		if err != nil {
			return err
		}
		p := params(strings.TrimPrefix(r[len(r)-1].Text, "AUTHCHALLENGE "))
		serverHash, err1 := hex.DecodeString(p["SERVERHASH"])
		serverNonce, err2 := hex.DecodeString(p["SERVERNONCE"])
		if err1 != nil || err2 != nil || len(serverHash) != 32 || len(serverNonce) != 32 {
			return fmt.Errorf("torproc: AUTHCHALLENGE: %w", ErrBadReply)
		}
		msg := append(append(append([]byte{}, cookie...), nonce[:]...), serverNonce...)
		want := hmacSHA256(serverHashKey, msg)
		if subtle.ConstantTimeCompare(want, serverHash) != 1 {
			return fmt.Errorf("torproc: AUTHCHALLENGE: tor does not know our cookie (is another process on the control port?)")
		}
		_, err = c.do(ctx, "AUTHENTICATE", "AUTHENTICATE "+hex.EncodeToString(hmacSHA256(clientHashKey, msg)))
		return err
	case has("COOKIE"):
		_, err := c.do(ctx, "AUTHENTICATE", "AUTHENTICATE "+hex.EncodeToString(cookie))
		return err
	}
	return fmt.Errorf("torproc: tor offers no cookie authentication (methods %v)", methods)
}

func hmacSHA256(key string, msg []byte) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(msg)
	return m.Sum(nil)
}
