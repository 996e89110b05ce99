package netclass

import (
	"net/netip"
)

// Class is why an address is not on the public internet; Public (the zero
// value) if it is.
type Class uint8

// Classes, from the IANA special-purpose registries. Documentation and
// benchmarking ranges count as not public: nothing legitimate listens there,
// and a lab network behind an exit may use them.
const (
	Public        Class = iota
	Invalid             // the zero netip.Addr, or a scoped (zoned) IPv6 address
	Unspecified         // 0.0.0.0/8 ("this network": Linux connects 0.0.0.0 to itself), ::/128
	Loopback            // 127.0.0.0/8, ::1/128
	Private             // RFC 1918, unique local fc00::/7, deprecated site-local fec0::/10
	LinkLocal           // 169.254.0.0/16 (cloud metadata at .169.254), fe80::/10
	SharedCGNAT         // 100.64.0.0/10, a carrier's internal network (RFC 6598)
	Multicast           // 224.0.0.0/4, ff00::/8
	Broadcast           // 255.255.255.255
	Reserved            // 240.0.0.0/4; IPv6 outside global unicast 2000::/3
	Documentation       // TEST-NET-1/2/3, 2001:db8::/32, 3fff::/20
	Benchmarking        // 198.18.0.0/15, 2001:2::/48
	Special             // other non-global special-purpose ranges (protocol assignments, 6to4 relay anycast, IPv4-compatible and -translated, local-use NAT64, discard, Teredo, SRv6)
)

var classNames = [...]string{
	Public:        "public",
	Invalid:       "invalid or scoped",
	Unspecified:   "unspecified",
	Loopback:      "loopback",
	Private:       "private",
	LinkLocal:     "link-local",
	SharedCGNAT:   "shared (CGNAT)",
	Multicast:     "multicast",
	Broadcast:     "broadcast",
	Reserved:      "reserved",
	Documentation: "documentation",
	Benchmarking:  "benchmarking",
	Special:       "special-purpose",
}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Wrap is how an address carried the IPv4 address that decided its class.
type Wrap uint8

const (
	Direct    Wrap = iota // the address itself (an IPv4-mapped one unmapped)
	NAT64                 // the IPv4 address embedded in 64:ff9b::/96 (RFC 6052)
	SixToFour             // the IPv4 address embedded in 2002::/16 (RFC 3056)
)

func (w Wrap) String() string {
	switch w {
	case NAT64:
		return "NAT64"
	case SixToFour:
		return "6to4"
	default:
		return "direct"
	}
}

// Verdict is Classify's answer.
type Verdict struct {
	// Class is Public when every form of the address is public.
	Class Class
	// Range is the registry range that decided, or the zero Prefix for
	// Public and Invalid.
	Range netip.Prefix
	// Wrap is Direct unless an embedded IPv4 address decided the class.
	Wrap Wrap
}

// Public reports whether the verdict is Public.
func (v Verdict) Public() bool { return v.Class == Public }

// Range is one row of the table Classify consults.
type Range struct {
	Prefix netip.Prefix
	Class  Class
	Source string // the RFC that reserves it
}

// ranges builds the table. Classify takes the longest prefix that contains
// an address. 64:ff9b::/96 and 2002::/16 are not in it: they are public
// unless the IPv4 address they embed is not (Classify checks that first).
func ranges() []Range {
	return []Range{
		// IPv4.
		{pfx("0.0.0.0/8"), Unspecified, "RFC 791, 1122"},
		{pfx("10.0.0.0/8"), Private, "RFC 1918"},
		{pfx("100.64.0.0/10"), SharedCGNAT, "RFC 6598"},
		{pfx("127.0.0.0/8"), Loopback, "RFC 1122"},
		{pfx("169.254.0.0/16"), LinkLocal, "RFC 3927"},
		{pfx("172.16.0.0/12"), Private, "RFC 1918"},
		{pfx("192.0.0.0/24"), Special, "RFC 6890 IETF protocol assignments"},
		{pfx("192.0.2.0/24"), Documentation, "RFC 5737 TEST-NET-1"},
		{pfx("192.88.99.0/24"), Special, "RFC 7526 deprecated 6to4 relay anycast"},
		{pfx("192.168.0.0/16"), Private, "RFC 1918"},
		{pfx("198.18.0.0/15"), Benchmarking, "RFC 2544"},
		{pfx("198.51.100.0/24"), Documentation, "RFC 5737 TEST-NET-2"},
		{pfx("203.0.113.0/24"), Documentation, "RFC 5737 TEST-NET-3"},
		{pfx("224.0.0.0/4"), Multicast, "RFC 5771"},
		{pfx("240.0.0.0/4"), Reserved, "RFC 1112"},
		{pfx("255.255.255.255/32"), Broadcast, "RFC 919"},
		// IPv6. IPv4-mapped addresses (::ffff:0:0/96) never reach the
		// table: Classify unmaps them first.
		{pfx("::/128"), Unspecified, "RFC 4291"},
		{pfx("::1/128"), Loopback, "RFC 4291"},
		{pfx("::/96"), Special, "RFC 4291 deprecated IPv4-compatible"},
		{pfx("::ffff:0:0:0/96"), Special, "RFC 2765 IPv4-translated (SIIT)"},
		{pfx("64:ff9b:1::/48"), Special, "RFC 8215 local-use NAT64: the embedded address depends on the local translator"},
		{pfx("100::/64"), Special, "RFC 6666 discard-only"},
		{pfx("2001::/23"), Special, "RFC 2928 IETF protocol assignments, incl. Teredo 2001::/32 (RFC 4380)"},
		{pfx("2001:2::/48"), Benchmarking, "RFC 5180"},
		{pfx("2001:db8::/32"), Documentation, "RFC 3849"},
		{pfx("3fff::/20"), Documentation, "RFC 9637"},
		{pfx("5f00::/16"), Special, "RFC 9602 SRv6 SIDs"},
		{pfx("fc00::/7"), Private, "RFC 4193 unique local"},
		{pfx("fe80::/10"), LinkLocal, "RFC 4291"},
		{pfx("fec0::/10"), Private, "RFC 3879 deprecated site-local"},
		{pfx("ff00::/8"), Multicast, "RFC 4291"},
		// Everything outside global unicast 2000::/3 not named above is
		// unassigned (RFC 4291 §2.4, IANA IPv6 Address Space).
		{pfx("::/3"), Reserved, "RFC 4291 outside global unicast"},
		{pfx("4000::/2"), Reserved, "RFC 4291 outside global unicast"},
		{pfx("8000::/1"), Reserved, "RFC 4291 outside global unicast"},
	}
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Ranges returns a copy of the table of non-public ranges, IPv4 first.
// Classify uses the longest prefix that contains an address.
func Ranges() []Range { return append([]Range(nil), table...) }

// Read-only after package initialisation: nothing writes them, and Ranges
// hands out a copy.
var (
	table          = ranges()
	nat64WellKnown = pfx("64:ff9b::/96")
	sixToFour      = pfx("2002::/16")
)

// Classify returns the class of a: Public only if a, in every form a
// translator or the kernel would deliver it as, is on the public internet.
//   - The zero Addr and a scoped (zoned) address are Invalid.
//   - An IPv4-mapped address (::ffff:a.b.c.d) is judged as a.b.c.d.
//   - A NAT64 address of the well-known prefix 64:ff9b::/96 and a 6to4
//     address (2002::/16) take the class of the IPv4 address they embed,
//     with Wrap set, when that is not public.
//   - Anything else takes the class of the longest range of Ranges that
//     contains it, or Public.
func Classify(a netip.Addr) Verdict {
	if !a.IsValid() || a.Zone() != "" {
		return Verdict{Class: Invalid}
	}
	a = a.Unmap()
	if v4, w := EmbeddedIPv4(a); w != Direct {
		if v := lookup(v4); v.Class != Public {
			v.Wrap = w
			return v
		}
		if w == NAT64 {
			return Verdict{} // the /96 itself lies in ::/3; only what it embeds counts
		}
	}
	return lookup(a)
}

// EmbeddedIPv4 returns the IPv4 address a NAT64 address of the well-known
// prefix (64:ff9b::/96, the last 32 bits, RFC 6052) or a 6to4 address
// (2002::/16, bits 16..47, RFC 3056) carries, and which of the two a is;
// Direct and the zero Addr for any other address. An IPv4-mapped address is
// Direct: unmap it instead.
func EmbeddedIPv4(a netip.Addr) (netip.Addr, Wrap) {
	if !a.Is6() || a.Is4In6() {
		return netip.Addr{}, Direct
	}
	b := a.As16()
	switch {
	case nat64WellKnown.Contains(a.WithZone("")):
		return netip.AddrFrom4([4]byte(b[12:16])), NAT64
	case sixToFour.Contains(a.WithZone("")):
		return netip.AddrFrom4([4]byte(b[2:6])), SixToFour
	}
	return netip.Addr{}, Direct
}

// IsPublic reports whether Classify(a) is Public.
func IsPublic(a netip.Addr) bool { return Classify(a).Class == Public }

// lookup returns the class of the longest range containing a (unmapped,
// unzoned), or Public.
func lookup(a netip.Addr) Verdict {
	best := -1
	for i, r := range table {
		if r.Prefix.Contains(a) && (best < 0 || r.Prefix.Bits() > table[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return Verdict{}
	}
	return Verdict{Class: table[best].Class, Range: table[best].Prefix}
}

// Inside returns the range of the table that contains all of p, if one
// does: the check that a setting opening p opens only non-public space. p
// must be masked and not IPv4-mapped (write the IPv4 form); a prefix that
// overlaps the well-known NAT64 prefix 64:ff9b::/96 is never inside (the
// class of its addresses is the class of the IPv4 addresses they embed).
func Inside(p netip.Prefix) (Range, bool) {
	if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" || p.Overlaps(nat64WellKnown) {
		return Range{}, false
	}
	best := -1
	for i, r := range table {
		if r.Prefix.Addr().Is4() == p.Addr().Is4() && r.Prefix.Bits() <= p.Bits() && r.Prefix.Contains(p.Addr()) &&
			(best < 0 || r.Prefix.Bits() > table[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return Range{}, false
	}
	return table[best], true
}
