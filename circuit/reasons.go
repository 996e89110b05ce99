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
	}
	return cell.EndMisc
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

// endError is a stream's END reason as an error; it wraps ErrorForEnd.
type endError struct {
	reason cell.EndReason
}

func (e *endError) Error() string { return "circuit: stream ended: " + e.reason.String() }
func (e *endError) Unwrap() error { return ErrorForEnd(e.reason) }

func errorsIsResource(err error) bool { return errors.Is(err, ErrResourceLimit) }
