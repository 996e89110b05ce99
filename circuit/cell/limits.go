package cell

import (
	"fmt"
	"net/netip"
)

// Limits on relay-message bodies (§5). Each is checked when encoding and when
// decoding.
const (
	// MaxRelayData is the longest relay-message body any hop can receive:
	// MaxData(1).
	MaxRelayData = BodyLen - LayerOverhead - RelayHeaderLen
	// MaxTargetLen is the longest BEGIN target (target_len is one byte).
	MaxTargetLen = 255
	// MaxHostLen is the longest RESOLVE host (host_len is one byte).
	MaxHostLen = 255
	// MaxPeerIDLen is the longest EXTEND peer id.
	MaxPeerIDLen = 128
	// MaxExtendAddrs is the most multiaddrs one EXTEND carries.
	MaxExtendAddrs = 8
	// MaxAddrLen is the longest multiaddr in an EXTEND.
	MaxAddrLen = 255
	// OnionKeyLen is the length of an X25519 onion key (§4).
	OnionKeyLen = 32
)

// Address types of CONNECTED and RESOLVED (§5).
const (
	atypNone = 0
	atypIPv4 = 4
	atypIPv6 = 6
)

func wrap(what string, err error) error { return fmt.Errorf("%s: %w", what, err) }

// appendAddr appends atyp | addr. A zero Addr is atyp 0 when allowNone holds;
// a zoned address cannot be encoded. IPv4-mapped IPv6 addresses stay IPv6.
func appendAddr(b []byte, a netip.Addr, allowNone bool) ([]byte, bool) {
	switch {
	case !a.IsValid():
		if !allowNone {
			return b, false
		}
		return append(b, atypNone), true
	case a.Zone() != "":
		return b, false
	case a.Is4():
		v := a.As4()
		return append(append(b, atypIPv4), v[:]...), true
	default:
		v := a.As16()
		return append(append(b, atypIPv6), v[:]...), true
	}
}

// readAddr reads atyp | addr. ok is false for an unknown atyp, or atyp 0
// when !allowNone; a short input is left to r.
func readAddr(r *reader, allowNone bool) (netip.Addr, bool) {
	switch r.u8() {
	case atypNone:
		return netip.Addr{}, allowNone || !r.ok
	case atypIPv4:
		v := r.bytes(4)
		if v == nil {
			return netip.Addr{}, true
		}
		return netip.AddrFrom4([4]byte(v)), true
	case atypIPv6:
		v := r.bytes(16)
		if v == nil {
			return netip.Addr{}, true
		}
		return netip.AddrFrom16([16]byte(v)), true
	}
	return netip.Addr{}, false
}

// printable reports whether s is 1..max bytes of printable, non-space ASCII.
func printable(s string, max int) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
