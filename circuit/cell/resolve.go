package cell

// Resolve is the body of a RESOLVE relay message (§5): ask the exit to look
// up a host name.
//
//	host_len(1) | host
type Resolve struct {
	// Host is 1..MaxHostLen bytes of printable ASCII without spaces.
	Host string
}

// AppendBinary appends the encoded body to b.
func (m *Resolve) AppendBinary(b []byte) ([]byte, error) {
	if !printable(m.Host, MaxHostLen) {
		return b, wrap("resolve", ErrBadHost)
	}
	b = append(b, byte(len(m.Host)))
	return append(b, m.Host...), nil
}

// UnmarshalBinary parses a RESOLVE body; it rejects bad hosts and trailing
// bytes. On error m is unchanged.
func (m *Resolve) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	host := r.bytes(int(r.u8())) // §5 RESOLVE host_len | host
	if err := r.done("resolve"); err != nil {
		return err
	}
	h := string(host)
	if !printable(h, MaxHostLen) {
		return wrap("resolve", ErrBadHost)
	}
	m.Host = h
	return nil
}
