package cell

import "encoding/binary"

// Extended is the body of an EXTENDED relay message (§5): the next hop's
// answer to an EXTEND, passed back by the hop that extended.
//
//	hs_len(2) | handshake
type Extended struct {
	// Handshake is the second Noise message (§4), non-empty. After
	// UnmarshalBinary it aliases the input.
	Handshake []byte
}

// AppendBinary appends the encoded body to b.
func (m *Extended) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Handshake) == 0 {
		return b, wrap("extended: handshake", ErrShort)
	}
	if 2+len(m.Handshake) > MaxRelayData {
		return b, wrap("extended: handshake", ErrTooLong)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Handshake)))
	return append(b, m.Handshake...), nil
}

// UnmarshalBinary parses an EXTENDED body; it rejects an empty handshake,
// bodies over MaxRelayData and trailing bytes. On error m is unchanged.
func (m *Extended) UnmarshalBinary(data []byte) error {
	if len(data) > MaxRelayData {
		return wrap("extended", ErrTooLong)
	}
	r := newReader(data)
	hs := r.bytes(int(r.u16())) // §5 EXTENDED hs_len | handshake
	if err := r.done("extended"); err != nil {
		return err
	}
	if len(hs) == 0 {
		return wrap("extended: handshake", ErrShort)
	}
	m.Handshake = hs
	return nil
}
