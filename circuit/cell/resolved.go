package cell

import (
	"encoding/binary"
	"net/netip"
)

// Resolved is the body of a RESOLVED relay message (§5): the exit's answer
// to a RESOLVE. A failed lookup is an END with EndResolveFailed instead.
//
//	atyp(1) | addr | ttl(4)
type Resolved struct {
	// Addr is the resolved address; it must be valid (atyp 4 or 6) and
	// unzoned. IPv4-mapped IPv6 addresses stay IPv6.
	Addr netip.Addr
	// TTL is how long the answer may be cached, in seconds.
	TTL uint32
}

// AppendBinary appends the encoded body to b.
func (m *Resolved) AppendBinary(b []byte) ([]byte, error) {
	b, ok := appendAddr(b, m.Addr, false)
	if !ok {
		return b, wrap("resolved", ErrBadAddr)
	}
	return binary.BigEndian.AppendUint32(b, m.TTL), nil
}

// UnmarshalBinary parses a RESOLVED body; it rejects atyp 0 and unknown atyp
// values, short input and trailing bytes. On error m is unchanged.
func (m *Resolved) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	a, ok := readAddr(&r, false) // §5 RESOLVED atyp | addr
	ttl := r.u32()               // §5 RESOLVED ttl
	if !ok {
		return wrap("resolved", ErrBadAddr)
	}
	if err := r.done("resolved"); err != nil {
		return err
	}
	m.Addr, m.TTL = a, ttl
	return nil
}
