package cell

import "encoding/binary"

// Extend is the body of an EXTEND relay message (§5): it asks the last hop
// to extend the circuit to the next one.
//
//	peer_len(1) | peer_id | naddrs(1) | (addr_len(2) | multiaddr)* |
//	onion_key(32) | hs_len(2) | handshake
//
// After UnmarshalBinary, Peer, each Addrs entry and Handshake alias the
// input.
type Extend struct {
	// Peer is the next hop's libp2p peer ID in binary form, 1..MaxPeerIDLen
	// bytes. This package does not parse it.
	Peer []byte
	// Addrs are binary multiaddrs to dial, at most MaxExtendAddrs, each
	// 1..MaxAddrLen bytes; may be empty when the hop can find the peer
	// itself.
	Addrs [][]byte
	// OnionKey is the next hop's X25519 onion key (§4).
	OnionKey [OnionKeyLen]byte
	// Handshake is the first Noise message for the next hop (§4), non-empty.
	Handshake []byte
}

// AppendBinary appends the encoded body to b. The whole body must fit in
// MaxRelayData bytes.
func (m *Extend) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Peer) == 0 {
		return b, wrap("extend: peer", ErrShort)
	}
	if len(m.Peer) > MaxPeerIDLen {
		return b, wrap("extend: peer", ErrTooLong)
	}
	if len(m.Addrs) > MaxExtendAddrs {
		return b, wrap("extend: addrs", ErrTooMany)
	}
	size := 1 + len(m.Peer) + 1 + OnionKeyLen + 2 + len(m.Handshake)
	for _, a := range m.Addrs {
		if len(a) == 0 {
			return b, wrap("extend: addr", ErrShort)
		}
		if len(a) > MaxAddrLen {
			return b, wrap("extend: addr", ErrTooLong)
		}
		size += 2 + len(a)
	}
	if len(m.Handshake) == 0 {
		return b, wrap("extend: handshake", ErrShort)
	}
	if size > MaxRelayData {
		return b, wrap("extend", ErrTooLong)
	}
	b = append(b, byte(len(m.Peer)))
	b = append(b, m.Peer...)
	b = append(b, byte(len(m.Addrs)))
	for _, a := range m.Addrs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(a)))
		b = append(b, a...)
	}
	b = append(b, m.OnionKey[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Handshake)))
	return append(b, m.Handshake...), nil
}

// UnmarshalBinary parses an EXTEND body. It rejects empty or over-long
// fields, more than MaxExtendAddrs addresses, bodies over MaxRelayData and
// trailing bytes. It reuses m.Addrs' backing array when it is large enough.
// On error m is unchanged.
func (m *Extend) UnmarshalBinary(data []byte) error {
	if len(data) > MaxRelayData {
		return wrap("extend", ErrTooLong)
	}
	r := newReader(data)
	peer := r.bytes(int(r.u8())) // §5 EXTEND peer_len | peer_id
	naddrs := int(r.u8())        // §5 EXTEND naddrs
	if naddrs > MaxExtendAddrs {
		return wrap("extend: addrs", ErrTooMany)
	}
	var addrBuf [MaxExtendAddrs][]byte
	for i := 0; i < naddrs; i++ {
		n := int(r.u16()) // §5 EXTEND addr_len
		if r.ok && n == 0 {
			return wrap("extend: addr", ErrShort)
		}
		if n > MaxAddrLen {
			return wrap("extend: addr", ErrTooLong)
		}
		addrBuf[i] = r.bytes(n) // §5 EXTEND multiaddr
	}
	key := r.bytes(OnionKeyLen) // §5 EXTEND onion_key
	hs := r.bytes(int(r.u16())) // §5 EXTEND hs_len | handshake
	if err := r.done("extend"); err != nil {
		return err
	}
	switch {
	case len(peer) == 0:
		return wrap("extend: peer", ErrShort)
	case len(peer) > MaxPeerIDLen:
		return wrap("extend: peer", ErrTooLong)
	case len(hs) == 0:
		return wrap("extend: handshake", ErrShort)
	}
	m.Peer = peer
	if naddrs == 0 {
		m.Addrs = m.Addrs[:0]
	} else {
		m.Addrs = append(m.Addrs[:0], addrBuf[:naddrs]...)
	}
	m.OnionKey = [OnionKeyLen]byte(key)
	m.Handshake = hs
	return nil
}
