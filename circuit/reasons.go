package circuit

import (
	"errors"
	"fmt"
	"io"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// EndReasonFor maps a destination error to the END reason a last hop sends
// (PROTOCOL.md §5.1), matching errors.go sentinels with errors.Is. nil and
// io.EOF map to EndDone; unknown errors to EndMisc.
func EndReasonFor(err error) cell.EndReason {
	switch {
	case err == nil, errors.Is(err, io.EOF):
		return cell.EndDone
	case errors.Is(err, ErrExitPolicy):
		return cell.EndExitPolicy
	case errors.Is(err, ErrResolveFailed):
		return cell.EndResolveFailed
	case errors.Is(err, ErrConnRefused):
		return cell.EndConnRefused
	case errors.Is(err, ErrUnreachable):
		return cell.EndUnreachable
	case errors.Is(err, ErrTimeout):
		return cell.EndTimeout
	case errors.Is(err, ErrServiceNotOffered):
		return cell.EndServiceNotOffered
	case errors.Is(err, ErrPayment):
		return cell.EndPayment
	case errors.Is(err, ErrResourceLimit):
		return cell.EndResourceLimit
	case errors.Is(err, ErrProtocol):
		return cell.EndProtocol
	case errors.Is(err, ErrClosed):
		return cell.EndDestroyed
	case errors.Is(err, ErrTorSocks):
		// Without its code (EndFor carries it): tor refused, reason
		// unknown.
		return cell.EndMisc
	}
	return cell.EndMisc
}

// EndFor is EndReasonFor with the END's SOCKS code: an error carrying a
// *TorSocksError whose Code is a SOCKS5 failure code (cell.ValidSocksCode)
// maps to END tor-socks with that code (PROTOCOL.md §5.1); one with any
// other code to END misc.
func EndFor(err error) cell.End {
	var ts *TorSocksError
	if errors.As(err, &ts) {
		if cell.ValidSocksCode(ts.Code) {
			return cell.End{Reason: cell.EndTorSocks, SocksCode: ts.Code}
		}
		return cell.End{Reason: cell.EndMisc}
	}
	return cell.End{Reason: EndReasonFor(err)}
}

// ErrorForEnd returns the sentinel a client sees for END reason r: nil for
// EndDone, ErrClosed for EndDestroyed and EndMisc, ErrProtocol for unknown
// reasons.
func ErrorForEnd(r cell.EndReason) error {
	switch r {
	case cell.EndDone:
		return nil
	case cell.EndResolveFailed:
		return ErrResolveFailed
	case cell.EndConnRefused:
		return ErrConnRefused
	case cell.EndExitPolicy:
		return ErrExitPolicy
	case cell.EndTimeout:
		return ErrTimeout
	case cell.EndUnreachable:
		return ErrUnreachable
	case cell.EndMisc, cell.EndDestroyed:
		return ErrClosed
	case cell.EndServiceNotOffered:
		return ErrServiceNotOffered
	case cell.EndPayment:
		return ErrPayment
	case cell.EndResourceLimit:
		return ErrResourceLimit
	case cell.EndTorSocks:
		return ErrTorSocks
	}
	return ErrProtocol
}

// DestroyReasonFor maps an error to the DESTROY reason a hop sends
// (PROTOCOL.md §2.3). nil maps to ReasonFinished, unknown errors to
// ReasonInternal.
func DestroyReasonFor(err error) cell.Reason {
	switch {
	case err == nil:
		return cell.ReasonFinished
	case errors.Is(err, ErrProtocol):
		return cell.ReasonProtocol
	case errors.Is(err, ErrResourceLimit):
		return cell.ReasonResource
	case errors.Is(err, ErrPayment):
		return cell.ReasonPayment
	case errors.Is(err, ErrTimeout):
		return cell.ReasonTimeout
	case errors.Is(err, ErrUnreachable), errors.Is(err, ErrConnRefused):
		return cell.ReasonConnectFailed
	}
	return cell.ReasonInternal
}

// ErrorForDestroy returns the sentinel that best explains DESTROY reason r,
// besides ErrClosed which every torn-down circuit reports: nil for reasons
// that carry no more meaning (none, requested, finished, internal, link
// closed).
func ErrorForDestroy(r cell.Reason) error {
	switch r {
	case cell.ReasonProtocol:
		return ErrProtocol
	case cell.ReasonResource:
		return ErrResourceLimit
	case cell.ReasonPayment:
		return ErrPayment
	case cell.ReasonTimeout:
		return ErrTimeout
	case cell.ReasonConnectFailed:
		return ErrUnreachable
	}
	if !r.Valid() {
		return ErrProtocol
	}
	return nil
}

// CloseError is why a circuit was torn down. It matches ErrClosed and the
// sentinel ErrorForDestroy(Reason) under errors.Is.
type CloseError struct {
	// Reason is the DESTROY reason (§2.3). When a hop tore the circuit
	// down it is the reason that hop gave in its TEARDOWN (§5.4), if one
	// came, rather than the generic one DESTROY carries past a hop.
	Reason cell.Reason
	// Remote is true when a hop tore the circuit down, false when this side
	// did.
	Remote bool
	// Depth is the position (1 = first hop) of the hop that reported
	// Reason in a TEARDOWN: the hop that gave up, or the one whose next
	// hop did. 0 when no TEARDOWN came (Reason is then the first hop's
	// DESTROY reason, or link closed).
	Depth int
}

// Error says who closed the circuit and why.
func (e *CloseError) Error() string {
	who := "locally"
	switch {
	case e.Remote && e.Depth > 0:
		who = fmt.Sprintf("by hop %d", e.Depth)
	case e.Remote:
		who = "by a hop"
	}
	return fmt.Sprintf("circuit: closed %s: %v", who, e.Reason)
}

// Unwrap exposes ErrClosed and the reason's sentinel to errors.Is.
func (e *CloseError) Unwrap() []error {
	if s := ErrorForDestroy(e.Reason); s != nil {
		return []error{ErrClosed, s}
	}
	return []error{ErrClosed}
}

// TorSocksError is the SOCKS5 reply code a Tor gateway's tor refused a
// stream with (END tor-socks, PROTOCOL.md §5.1). Circuit.Dial returns it
// (find it with errors.As) so that a SOCKS front end can answer its client
// with the same byte; it matches ErrTorSocks under errors.Is. A gateway
// service returns one from its Begin hook to send that END.
type TorSocksError struct {
	// Code is the reply byte: 0x01..0x08 (RFC 1928) or Tor's extended
	// 0xF0..0xF7 (cell.ValidSocksCode).
	Code byte
}

// Error names the code.
func (e *TorSocksError) Error() string {
	return fmt.Sprintf("circuit: tor refused the stream: SOCKS reply 0x%02x", e.Code)
}

// Unwrap exposes ErrTorSocks.
func (e *TorSocksError) Unwrap() error { return ErrTorSocks }

// endError is a stream's END reason as an error; it wraps ErrorForEnd,
// or for END tor-socks a *TorSocksError with the code.
type endError struct {
	reason cell.EndReason
	code   byte // END tor-socks only: tor's SOCKS reply code
}

func (e *endError) Error() string { return "circuit: stream ended: " + e.reason.String() }
func (e *endError) Unwrap() error {
	if e.reason == cell.EndTorSocks {
		return &TorSocksError{Code: e.code}
	}
	return ErrorForEnd(e.reason)
}

func errorsIsResource(err error) bool { return errors.Is(err, ErrResourceLimit) }
