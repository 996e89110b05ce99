package cell

// TopUp is the body of a TOPUP relay message (§5): an opaque payment payload
// defined by VOUCHERS.md, at most MaxRelayData bytes, possibly empty.
type TopUp struct {
	// Payload aliases the input after UnmarshalBinary.
	Payload []byte
}

// AppendBinary appends the encoded body to b.
func (m *TopUp) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Payload) > MaxRelayData {
		return b, wrap("topup", ErrTooLong)
	}
	return append(b, m.Payload...), nil
}

// UnmarshalBinary takes the whole body as the payload; it rejects bodies
// over MaxRelayData. On error m is unchanged.
func (m *TopUp) UnmarshalBinary(data []byte) error {
	if len(data) > MaxRelayData {
		return wrap("topup", ErrTooLong)
	}
	m.Payload = data[:len(data):len(data)]
	return nil
}

// TopUpAck is the body of a TOPUP_ACK relay message (§5):
//
//	status(1) | payload
//
// Status values and the payload are defined by VOUCHERS.md; this package
// passes them through.
type TopUpAck struct {
	Status uint8
	// Payload aliases the input after UnmarshalBinary; possibly empty.
	Payload []byte
}

// AppendBinary appends the encoded body to b.
func (m *TopUpAck) AppendBinary(b []byte) ([]byte, error) {
	if 1+len(m.Payload) > MaxRelayData {
		return b, wrap("topup_ack", ErrTooLong)
	}
	b = append(b, m.Status)
	return append(b, m.Payload...), nil
}

// UnmarshalBinary parses a TOPUP_ACK body; it rejects an empty body and
// bodies over MaxRelayData. On error m is unchanged.
func (m *TopUpAck) UnmarshalBinary(data []byte) error {
	if len(data) > MaxRelayData {
		return wrap("topup_ack", ErrTooLong)
	}
	r := newReader(data)
	status := r.u8()    // §5 TOPUP_ACK status
	payload := r.rest() // §5 TOPUP_ACK payload
	if err := r.done("topup_ack"); err != nil {
		return err
	}
	m.Status, m.Payload = status, payload
	return nil
}
