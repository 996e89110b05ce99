package cell

// Teardown is the body of a TEARDOWN relay message (§5, §5.4): the reason a
// hop tears the circuit down, sent to the client inside that hop's layer
// just before the DESTROY, which carries the real reason only as far as the
// hop's neighbour (§2.3):
//
//	reason(1)
type Teardown struct {
	// Reason is a DESTROY reason (§2.3): the hop's own, or the one its
	// next hop's DESTROY carried.
	Reason Reason
}

// AppendBinary appends the encoded body to b; it refuses unknown reasons.
// It does not allocate when b has room for one byte.
func (m *Teardown) AppendBinary(b []byte) ([]byte, error) {
	if !m.Reason.Valid() {
		return b, wrap("teardown", ErrUnknownReason)
	}
	return append(b, byte(m.Reason)), nil
}

// UnmarshalBinary parses a TEARDOWN body; it rejects unknown reasons and
// trailing bytes. On error m is unchanged.
func (m *Teardown) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	reason := Reason(r.u8()) // §5.4 reason
	if err := r.done("teardown"); err != nil {
		return err
	}
	if !reason.Valid() {
		return wrap("teardown", ErrUnknownReason)
	}
	m.Reason = reason
	return nil
}
