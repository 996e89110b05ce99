package discovery

import (
	"net/netip"

	ma "github.com/multiformats/go-multiaddr"
)

// netGroup names the network a node is in for the "one hop per network" rule:
// the IPv4 /16 or the IPv6 /32 of an address.
type netGroup netip.Prefix

// groupOf returns the network group of a multiaddr's IP, and false for
// addresses with no IP component (DNS names, relay circuits).
func groupOf(a ma.Multiaddr) (netGroup, bool) {
	if a == nil {
		return netGroup{}, false
	}
	for _, c := range a {
		switch c.Code() {
		case ma.P_IP4, ma.P_IP6:
			ip, ok := netip.AddrFromSlice(c.RawValue())
			if !ok {
				return netGroup{}, false
			}
			ip = ip.Unmap()
			bits := 32
			if ip.Is4() {
				bits = 16
			}
			p, err := ip.Prefix(bits)
			if err != nil {
				return netGroup{}, false
			}
			return netGroup(p), true
		}
	}
	return netGroup{}, false
}

// groupsOf returns the distinct groups of addrs.
func groupsOf(addrs ...ma.Multiaddr) []netGroup {
	var out []netGroup
	for _, a := range addrs {
		g, ok := groupOf(a)
		if !ok {
			continue
		}
		dup := false
		for _, h := range out {
			if h == g {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, g)
		}
	}
	return out
}
