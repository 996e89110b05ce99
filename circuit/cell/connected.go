package cell

import "net/netip"

// Connected is the body of a CONNECTED relay message (§5):
//
//	atyp(1) | addr
//
// atyp 0 carries no address, 4 an IPv4 address (4 bytes), 6 an IPv6 address
// (16 bytes).
type Connected struct {
	// Addr is the address the exit connected to; the zero Addr (invalid)
	// means none (atyp 0). IPv4-mapped IPv6 addresses stay IPv6; zoned
	// addresses cannot be encoded.
	Addr netip.Addr
}

// AppendBinary appends the encoded body to b.
func (m *Connected) AppendBinary(b []byte) ([]byte, error) {
	b, ok := appendAddr(b, m.Addr, true)
	if !ok {
		return b, wrap("connected", ErrBadAddr)
	}
	return b, nil
}

// UnmarshalBinary parses a CONNECTED body; it rejects unknown atyp values,
// short addresses and trailing bytes. On error m is unchanged.
func (m *Connected) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	a, ok := readAddr(&r, true) // §5 CONNECTED atyp | addr
	if !ok {
		return wrap("connected", ErrBadAddr)
	}
	if err := r.done("connected"); err != nil {
		return err
	}
	m.Addr = a
	return nil
}
