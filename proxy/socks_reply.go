package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/co-infuse/co-infuse/circuit"
)

// SOCKS5 reply codes (RFC 1928 §6).
const (
	repSucceeded           byte = 0x00
	repGeneralFailure      byte = 0x01
	repNotAllowed          byte = 0x02
	repHostUnreachable     byte = 0x04
	repConnectionRefused   byte = 0x05
	repTTLExpired          byte = 0x06
	repCommandNotSupported byte = 0x07
	repAddrTypeNotSupport  byte = 0x08
)

// ReplyError is a Dial error that names the exact SOCKS5 reply code the
// client gets: node returns one when a Tor gateway relays tor's own reply
// (0xF0..0xF7 for onion services, PROTOCOL.md §5.1), so the client sees
// the byte it would have had from tor. A Code outside RFC 1928's failures
// (0x01..0x08) and Tor's extended 0xF0..0xF7 is sent as general failure.
// HTTP CONNECT clients get the status Err maps to.
type ReplyError struct {
	Code byte
	Err  error // what failed; may be nil
}

// Error names the code and the cause.
func (e *ReplyError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("proxy: SOCKS reply 0x%02x", e.Code)
	}
	return fmt.Sprintf("proxy: SOCKS reply 0x%02x: %v", e.Code, e.Err)
}

// Unwrap returns Err.
func (e *ReplyError) Unwrap() error { return e.Err }

// exactCode returns the code of a *ReplyError in err's chain, if any.
func exactCode(err error) (byte, bool) {
	var re *ReplyError
	if !errors.As(err, &re) {
		return 0, false
	}
	if c := re.Code; (c >= 0x01 && c <= 0x08) || (c >= 0xF0 && c <= 0xF7) {
		return c, true
	}
	return repGeneralFailure, true
}

// replyCodeIs reports whether err carries a *ReplyError with code c.
func replyCodeIs(err error, c byte) bool {
	got, ok := exactCode(err)
	return ok && got == c
}

// replyCode maps a Dial or Resolve error to the SOCKS5 reply code a client
// gets (docs/PROXY.md, INTEROP.md §1.5); a *ReplyError decides alone.
func replyCode(err error) byte {
	if c, ok := exactCode(err); ok {
		return c
	}
	switch {
	case err == nil:
		return repSucceeded
	case errors.Is(err, ErrBadTarget):
		return repGeneralFailure
	case errors.Is(err, circuit.ErrExitPolicy):
		return repNotAllowed
	case errors.Is(err, circuit.ErrConnRefused):
		return repConnectionRefused
	case errors.Is(err, circuit.ErrUnreachable):
		// One END reason (6) covers host and network unreachable: the
		// errno stays at the exit, so 0x03 is never sent.
		return repHostUnreachable
	case errors.Is(err, circuit.ErrResolveFailed), errors.Is(err, ErrOnionNotFound):
		return repHostUnreachable
	case errors.Is(err, circuit.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return repTTLExpired
	default:
		return repGeneralFailure
	}
}

// appendReply appends a SOCKS5 reply (RFC 1928 §6) with code rep and bound
// address addr, port 0. An invalid addr is sent as 0.0.0.0: we never reveal
// the address of the stream's far end, which a circuit does not have anyway.
func appendReply(b []byte, rep byte, addr netip.Addr) []byte {
	b = append(b, socksVersion, rep, 0x00)
	switch {
	case addr.Is6() && !addr.Is4In6():
		a := addr.As16()
		b = append(b, atypIPv6)
		b = append(b, a[:]...)
	case addr.IsValid():
		a := addr.Unmap().As4()
		b = append(b, atypIPv4)
		b = append(b, a[:]...)
	default:
		b = append(b, atypIPv4, 0, 0, 0, 0)
	}
	return append(b, 0, 0)
}
