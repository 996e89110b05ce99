package discovery

import (
	"net/netip"

	"github.com/co-infuse/co-infuse/internal/netclass"
	ma "github.com/multiformats/go-multiaddr"
)

// netGroup names the network a node is in for the "one hop per network" rule:
// the IPv4 /16 or the IPv6 /32 of an address.
type netGroup netip.Prefix

// privateAddr reports whether ip is not a public address by the same
// classification exits and the relay dial filter use (internal/netclass):
// loopback, private (RFC 1918, fc00::/7), shared CGNAT space, link-local,
// unspecified, documentation, multicast and their mapped forms. Such an
// address says nothing about which operator or network a node is on.
func privateAddr(ip netip.Addr) bool { return !netclass.IsPublic(ip) }

// isPrivateMultiaddr reports whether a's IP (if any) is private.
func isPrivateMultiaddr(a ma.Multiaddr) bool {
	for _, c := range a {
		switch c.Code() {
		case ma.P_IP4, ma.P_IP6:
			ip, ok := netip.AddrFromSlice(c.RawValue())
			return ok && privateAddr(ip)
		}
	}
	return false
}

// groupOf returns the network group of a multiaddr's IP, and false for
// addresses with no IP component (DNS names, relay circuits) and, unless
// allowPrivate, for private addresses (privateAddr).
func groupOf(a ma.Multiaddr, allowPrivate bool) (netGroup, bool) {
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
			if !allowPrivate && privateAddr(ip) {
				return netGroup{}, false
			}
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
func groupsOf(allowPrivate bool, addrs ...ma.Multiaddr) []netGroup {
	var out []netGroup
	for _, a := range addrs {
		g, ok := groupOf(a, allowPrivate)
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
