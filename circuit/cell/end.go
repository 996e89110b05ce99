package cell

import "strconv"

// EndReason says why a stream ended (§5.1).
type EndReason uint8

// END reasons (§5.1).
const (
	EndDone              EndReason = 0  // done
	EndMisc              EndReason = 1  // misc
	EndResolveFailed     EndReason = 2  // resolve failed
	EndConnRefused       EndReason = 3  // connection refused
	EndExitPolicy        EndReason = 4  // exit policy
	EndTimeout           EndReason = 5  // timeout
	EndUnreachable       EndReason = 6  // host/network unreachable
	EndDestroyed         EndReason = 7  // destroyed
	EndProtocol          EndReason = 8  // protocol
	EndServiceNotOffered EndReason = 9  // service not offered
	EndPayment           EndReason = 10 // payment
	EndResourceLimit     EndReason = 11 // resource limit
)

// Valid reports whether r is a known END reason.
func (r EndReason) Valid() bool { return r <= EndResourceLimit }

// String returns a short name for r, or "EndReason(n)" if unknown.
func (r EndReason) String() string {
	switch r {
	case EndDone:
		return "done"
	case EndMisc:
		return "misc"
	case EndResolveFailed:
		return "resolve-failed"
	case EndConnRefused:
		return "conn-refused"
	case EndExitPolicy:
		return "exit-policy"
	case EndTimeout:
		return "timeout"
	case EndUnreachable:
		return "unreachable"
	case EndDestroyed:
		return "destroyed"
	case EndProtocol:
		return "protocol"
	case EndServiceNotOffered:
		return "service-not-offered"
	case EndPayment:
		return "payment"
	case EndResourceLimit:
		return "resource-limit"
	}
	return "EndReason(" + strconv.Itoa(int(r)) + ")"
}

// End is the body of an END relay message (§5):
//
//	reason(1)
type End struct {
	Reason EndReason
}

// AppendBinary appends the encoded body to b; it refuses unknown reasons.
func (m *End) AppendBinary(b []byte) ([]byte, error) {
	if !m.Reason.Valid() {
		return b, wrap("end", ErrUnknownReason)
	}
	return append(b, byte(m.Reason)), nil
}

// UnmarshalBinary parses an END body; it rejects unknown reasons and trailing
// bytes. On error m is unchanged.
func (m *End) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	reason := EndReason(r.u8()) // §5.1 reason
	if err := r.done("end"); err != nil {
		return err
	}
	if !reason.Valid() {
		return wrap("end", ErrUnknownReason)
	}
	m.Reason = reason
	return nil
}
