package cell

import (
	"fmt"
	"strconv"
)

// Reason says why a circuit was destroyed (§2.3).
type Reason uint8

// DESTROY reasons (§2.3).
const (
	ReasonNone          Reason = 0 // no reason given
	ReasonProtocol      Reason = 1 // protocol violation
	ReasonInternal      Reason = 2 // internal error
	ReasonRequested     Reason = 3 // requested by the client
	ReasonResource      Reason = 4 // resource limit
	ReasonConnectFailed Reason = 5 // connection to the next hop failed
	ReasonTimeout       Reason = 6 // timeout
	ReasonLinkClosed    Reason = 7 // neighbour link closed
	ReasonPayment       Reason = 8 // payment required or exhausted
	ReasonFinished      Reason = 9 // finished
)

// Valid reports whether r is a known reason.
func (r Reason) Valid() bool { return r <= ReasonFinished }

// String returns a short name for r, or "Reason(n)" if unknown.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonProtocol:
		return "protocol"
	case ReasonInternal:
		return "internal"
	case ReasonRequested:
		return "requested"
	case ReasonResource:
		return "resource"
	case ReasonConnectFailed:
		return "connect-failed"
	case ReasonTimeout:
		return "timeout"
	case ReasonLinkClosed:
		return "link-closed"
	case ReasonPayment:
		return "payment"
	case ReasonFinished:
		return "finished"
	}
	return "Reason(" + strconv.Itoa(int(r)) + ")"
}

// Destroy is the body of a DESTROY cell (§2.3):
//
//	reason(1) | zero padding
type Destroy struct {
	Reason Reason
}

// MarshalBody writes m into body, which must be exactly BodyLen bytes, and
// zero-fills the rest. It refuses an unknown reason.
func (m *Destroy) MarshalBody(body []byte) error {
	if len(body) != BodyLen {
		return fmt.Errorf("destroy: body is %d bytes: %w", len(body), ErrBadLength)
	}
	if !m.Reason.Valid() {
		return fmt.Errorf("destroy: %v: %w", m.Reason, ErrUnknownReason)
	}
	body[0] = byte(m.Reason)
	clear(body[1:])
	return nil
}

// UnmarshalBody parses a DESTROY body of exactly BodyLen bytes. It rejects an
// unknown reason and non-zero padding. A hop tears the circuit down even when
// this fails; the error only tells it the neighbour misbehaved.
func (m *Destroy) UnmarshalBody(body []byte) error {
	if len(body) != BodyLen {
		return fmt.Errorf("destroy: body is %d bytes: %w", len(body), ErrBadLength)
	}
	r := Reason(body[0]) // §2.3 reason
	if !r.Valid() {
		return fmt.Errorf("destroy: %v: %w", r, ErrUnknownReason)
	}
	if !allZero(body[1:]) {
		return fmt.Errorf("destroy: %w", ErrBadPadding)
	}
	m.Reason = r
	return nil
}
