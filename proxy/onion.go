package proxy

import (
	"errors"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// Tor's extended SOCKS5 reply codes for onion services (Tor
// socks-extensions.txt, "Extended error codes"); bitcoind accepts them
// (INTEROP.md §1.5). Sent only when the client asked for a .onion target.
const (
	repOnionDescNotFound  byte = 0xF0 // descriptor not found
	repOnionIntroFailed   byte = 0xF2 // introduction failed
	repOnionRendFailed    byte = 0xF3 // rendezvous failed
	repOnionBadAddress    byte = 0xF6 // invalid onion address
	repOnionIntroTimedOut byte = 0xF7 // introduction timed out
)

// Sentinels a Dial func wraps for the failures of the onion-service path
// (node maps rendezvous's errors to them); each selects one extended code.
var (
	// ErrOnionIntroFailed: every introduction point refused (0xF2).
	ErrOnionIntroFailed = errors.New("proxy: onion service introduction failed")
	// ErrOnionRendezvousFailed: the rendezvous did not complete (0xF3).
	ErrOnionRendezvousFailed = errors.New("proxy: onion service rendezvous failed")
	// ErrOnionBadAddress: not a valid v3 onion address (0xF6).
	ErrOnionBadAddress = errors.New("proxy: invalid onion address")
	// ErrOnionIntroTimedOut: the service never came to the rendezvous (0xF7).
	ErrOnionIntroTimedOut = errors.New("proxy: onion service introduction timed out")
)

// validOnionV3 checks a v3 onion host ("[sub.]<id>.onion", any case):
// 56 base32 characters of pubkey | checksum | version 3 (Tor rend-spec-v3
// §6, in internal/onionaddr). A host not ending in ".onion" is not valid.
func validOnionV3(host string) bool {
	_, err := onionaddr.Parse(host)
	return err == nil
}

// onionReplyCode refines the reply for a failed .onion target with Tor's
// extended codes; ok is false when the standard code fits better.
func onionReplyCode(err error) (code byte, ok bool) {
	if c, ok := exactCode(err); ok {
		return c, true
	}
	switch {
	case errors.Is(err, ErrOnionIntroFailed):
		return repOnionIntroFailed, true
	case errors.Is(err, ErrOnionRendezvousFailed):
		return repOnionRendFailed, true
	case errors.Is(err, ErrOnionBadAddress):
		return repOnionBadAddress, true
	case errors.Is(err, ErrOnionIntroTimedOut):
		return repOnionIntroTimedOut, true
	case errors.Is(err, ErrOnionNotFound), errors.Is(err, circuit.ErrResolveFailed), errors.Is(err, circuit.ErrServiceNotOffered):
		return repOnionDescNotFound, true
	case errors.Is(err, circuit.ErrTimeout):
		return repOnionIntroTimedOut, true
	}
	return 0, false
}
