package proxy

import (
	"bytes"
	"crypto/sha3"
	"encoding/base32"
	"errors"
	"strings"

	"github.com/co-infuse/co-infuse/circuit"
)

// Tor's extended SOCKS5 reply codes for onion services (Tor
// socks-extensions.txt, "Extended error codes"); bitcoind accepts them
// (INTEROP.md §1.5). Sent only when the client asked for a .onion target.
const (
	repOnionDescNotFound  byte = 0xF0 // descriptor not found
	repOnionBadAddress    byte = 0xF6 // invalid onion address
	repOnionIntroTimedOut byte = 0xF7 // introduction timed out
)

// onionV3Len is the length of a v3 onion service id: base32 of
// pubkey(32) | checksum(2) | version(1).
const onionV3Len = 56

// validOnionV3 checks a v3 onion host ("[sub.]<id>.onion", any case): the
// id decodes to 35 bytes with version 3 and a checksum equal to the first
// two bytes of SHA3-256(".onion checksum" | pubkey | version) (Tor
// rend-spec-v3 §6). A host not ending in ".onion" is not valid.
func validOnionV3(host string) bool {
	n := len(host) - len(".onion")
	if n < 1 || !strings.EqualFold(host[n:], ".onion") {
		return false
	}
	labels := strings.Split(strings.ToLower(host[:n]), ".")
	id := labels[len(labels)-1]
	if len(id) != onionV3Len {
		return false
	}
	raw, err := base32.StdEncoding.DecodeString(strings.ToUpper(id))
	if err != nil || len(raw) != 35 || raw[34] != 3 {
		return false
	}
	msg := make([]byte, 0, 15+32+1)
	msg = append(msg, ".onion checksum"...)
	msg = append(msg, raw[:32]...)
	msg = append(msg, raw[34])
	sum := sha3.Sum256(msg)
	return bytes.Equal(sum[:2], raw[32:34])
}

// onionReplyCode refines the reply for a failed .onion target with Tor's
// extended codes; ok is false when the standard code fits better.
func onionReplyCode(err error) (code byte, ok bool) {
	switch {
	case errors.Is(err, ErrOnionNotFound), errors.Is(err, circuit.ErrResolveFailed), errors.Is(err, circuit.ErrServiceNotOffered):
		return repOnionDescNotFound, true
	case errors.Is(err, circuit.ErrTimeout):
		return repOnionIntroTimedOut, true
	}
	return 0, false
}
