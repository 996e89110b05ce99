package netclass

import (
	"net/netip"
	"testing"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		addr  string
		class Class
		wrap  Wrap
		rng   string // the deciding range, "" for none
	}{
		// IPv4.
		{"public v4", "1.1.1.1", Public, Direct, ""},
		{"public v4 bitcoin", "93.184.216.34", Public, Direct, ""},
		{"this network", "0.1.2.3", Unspecified, Direct, "0.0.0.0/8"},
		{"unspecified v4", "0.0.0.0", Unspecified, Direct, "0.0.0.0/8"},
		{"rfc1918 10/8", "10.0.0.5", Private, Direct, "10.0.0.0/8"},
		{"rfc1918 172.16/12", "172.31.255.255", Private, Direct, "172.16.0.0/12"},
		{"172.32 is public", "172.32.0.1", Public, Direct, ""},
		{"rfc1918 192.168/16", "192.168.1.1", Private, Direct, "192.168.0.0/16"},
		{"cgnat", "100.64.0.1", SharedCGNAT, Direct, "100.64.0.0/10"},
		{"cgnat top", "100.127.255.254", SharedCGNAT, Direct, "100.64.0.0/10"},
		{"100.128 is public", "100.128.0.1", Public, Direct, ""},
		{"loopback v4", "127.0.0.1", Loopback, Direct, "127.0.0.0/8"},
		{"loopback v4 high", "127.255.0.9", Loopback, Direct, "127.0.0.0/8"},
		{"link-local v4 metadata", "169.254.169.254", LinkLocal, Direct, "169.254.0.0/16"},
		{"ietf protocol assignments", "192.0.0.8", Special, Direct, "192.0.0.0/24"},
		{"test-net-1", "192.0.2.10", Documentation, Direct, "192.0.2.0/24"},
		{"test-net-2", "198.51.100.1", Documentation, Direct, "198.51.100.0/24"},
		{"test-net-3", "203.0.113.7", Documentation, Direct, "203.0.113.0/24"},
		{"6to4 relay anycast", "192.88.99.1", Special, Direct, "192.88.99.0/24"},
		{"benchmarking", "198.19.255.1", Benchmarking, Direct, "198.18.0.0/15"},
		{"multicast v4", "224.0.0.251", Multicast, Direct, "224.0.0.0/4"},
		{"multicast v4 top", "239.255.255.250", Multicast, Direct, "224.0.0.0/4"},
		{"reserved 240/4", "240.0.0.1", Reserved, Direct, "240.0.0.0/4"},
		{"broadcast", "255.255.255.255", Broadcast, Direct, "255.255.255.255/32"},
		// IPv6.
		{"public v6", "2606:4700::1111", Public, Direct, ""},
		{"unspecified v6", "::", Unspecified, Direct, "::/128"},
		{"loopback v6", "::1", Loopback, Direct, "::1/128"},
		{"link-local v6", "fe80::1", LinkLocal, Direct, "fe80::/10"},
		{"ula fd", "fd12:3456::1", Private, Direct, "fc00::/7"},
		{"ula fc", "fc00::1", Private, Direct, "fc00::/7"},
		{"site-local", "fec0::1", Private, Direct, "fec0::/10"},
		{"multicast v6", "ff02::fb", Multicast, Direct, "ff00::/8"},
		{"multicast v6 global scope", "ff0e::1", Multicast, Direct, "ff00::/8"},
		{"doc v6", "2001:db8::1", Documentation, Direct, "2001:db8::/32"},
		{"doc v6 3fff", "3fff::1", Documentation, Direct, "3fff::/20"},
		{"benchmarking v6", "2001:2::1", Benchmarking, Direct, "2001:2::/48"},
		{"teredo", "2001::1", Special, Direct, "2001::/23"},
		{"teredo wrapping public", "2001:0:4136:e378:8000:63bf:3fff:fdd2", Special, Direct, "2001::/23"},
		{"discard", "100::1", Special, Direct, "100::/64"},
		{"srv6", "5f00::1", Special, Direct, "5f00::/16"},
		{"outside 2000::/3", "4000::1", Reserved, Direct, "4000::/2"},
		{"outside 2000::/3 low", "1::1", Reserved, Direct, "::/3"},
		{"outside 2000::/3 high", "c000::1", Reserved, Direct, "8000::/1"},
		// IPv4 inside IPv6.
		{"mapped private", "::ffff:10.0.0.1", Private, Direct, "10.0.0.0/8"},
		{"mapped loopback", "::ffff:127.0.0.1", Loopback, Direct, "127.0.0.0/8"},
		{"mapped metadata", "::ffff:169.254.169.254", LinkLocal, Direct, "169.254.0.0/16"},
		{"mapped public", "::ffff:1.1.1.1", Public, Direct, ""},
		{"compatible private", "::10.0.0.1", Special, Direct, "::/96"},
		{"compatible public", "::1.1.1.1", Special, Direct, "::/96"},
		{"translated", "::ffff:0:a00:1", Special, Direct, "::ffff:0:0:0/96"},
		{"nat64 private", "64:ff9b::a00:1", Private, NAT64, "10.0.0.0/8"},
		{"nat64 loopback", "64:ff9b::7f00:1", Loopback, NAT64, "127.0.0.0/8"},
		{"nat64 metadata", "64:ff9b::a9fe:a9fe", LinkLocal, NAT64, "169.254.0.0/16"},
		{"nat64 cgnat", "64:ff9b::6440:1", SharedCGNAT, NAT64, "100.64.0.0/10"},
		{"nat64 public", "64:ff9b::101:101", Public, Direct, ""},
		{"nat64 outside /96", "64:ff9b:0:1::a00:1", Reserved, Direct, "::/3"},
		{"local-use nat64 private", "64:ff9b:1::a00:1", Special, Direct, "64:ff9b:1::/48"},
		{"local-use nat64 public", "64:ff9b:1::101:101", Special, Direct, "64:ff9b:1::/48"},
		{"6to4 private", "2002:c0a8:101::1", Private, SixToFour, "192.168.0.0/16"},
		{"6to4 loopback", "2002:7f00:1::1", Loopback, SixToFour, "127.0.0.0/8"},
		{"6to4 10/8", "2002:a00:5::", Private, SixToFour, "10.0.0.0/8"},
		{"6to4 public", "2002:101:101::1", Public, Direct, ""},
		{"mapped nat64 is not a thing", "::ffff:100:0", Public, Direct, ""}, // ::ffff:1.0.0.0
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := netip.MustParseAddr(tc.addr)
			v := Classify(a)
			if v.Class != tc.class || v.Wrap != tc.wrap {
				t.Fatalf("Classify(%s) = %v via %v, want %v via %v", a, v.Class, v.Wrap, tc.class, tc.wrap)
			}
			var want netip.Prefix
			if tc.rng != "" {
				want = netip.MustParsePrefix(tc.rng)
			}
			if v.Range != want {
				t.Fatalf("Classify(%s) range %v, want %v", a, v.Range, want)
			}
			if IsPublic(a) != (tc.class == Public) || v.Public() != (tc.class == Public) {
				t.Fatalf("IsPublic(%s) = %v, class %v", a, IsPublic(a), tc.class)
			}
		})
	}
}

func TestClassifyInvalid(t *testing.T) {
	t.Parallel()
	for _, a := range []netip.Addr{{}, netip.MustParseAddr("fe80::1%eth0"), netip.MustParseAddr("2606:4700::1111%1")} {
		if v := Classify(a); v.Class != Invalid || v.Public() {
			t.Errorf("Classify(%v) = %+v, want Invalid", a, v)
		}
	}
}

// TestClassifyWrapsAgree: for a sample of IPv4 addresses, the mapped form
// has the same class and range, and the NAT64 and 6to4 forms are public
// exactly when the IPv4 address is, with its class when it is not.
func TestClassifyWrapsAgree(t *testing.T) {
	t.Parallel()
	for _, r := range Ranges() {
		if !r.Prefix.Addr().Is4() {
			continue
		}
		first := r.Prefix.Addr()
		for _, v4 := range []netip.Addr{first, lastOf(r.Prefix), first.Prev(), lastOf(r.Prefix).Next()} {
			if v4.IsValid() {
				checkWraps(t, v4.As4())
			}
		}
	}
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom4(b)
}

// checkWraps is the property TestClassifyWrapsAgree and FuzzClassify check.
func checkWraps(t *testing.T, v4 [4]byte) {
	t.Helper()
	a := netip.AddrFrom4(v4)
	want := Classify(a)
	if want.Wrap != Direct {
		t.Fatalf("Classify(%v) wrap %v for an IPv4 address", a, want.Wrap)
	}
	if got := Classify(netip.AddrFrom16(netip.AddrFrom4(v4).As16())); got != want {
		t.Fatalf("mapped %v: %+v, IPv4 form %+v", a, got, want)
	}
	nat := [16]byte{0, 0x64, 0xff, 0x9b, 12: v4[0], v4[1], v4[2], v4[3]}
	six := [16]byte{0x20, 0x02, v4[0], v4[1], v4[2], v4[3], 15: 1}
	for _, w := range []struct {
		b    [16]byte
		wrap Wrap
	}{{nat, NAT64}, {six, SixToFour}} {
		got := Classify(netip.AddrFrom16(w.b))
		if want.Public() {
			if !got.Public() {
				t.Fatalf("%v wrapping public %v: %+v", netip.AddrFrom16(w.b), a, got)
			}
			continue
		}
		if got.Class != want.Class || got.Range != want.Range || got.Wrap != w.wrap {
			t.Fatalf("%v wrapping %v: %+v, want %+v via %v", netip.AddrFrom16(w.b), a, got, want, w.wrap)
		}
	}
}

func TestInside(t *testing.T) {
	t.Parallel()
	cases := []struct {
		prefix string
		ok     bool
		rng    string
	}{
		{"127.0.0.0/8", true, "127.0.0.0/8"},
		{"127.0.0.1/32", true, "127.0.0.0/8"},
		{"::1/128", true, "::1/128"},
		{"10.8.0.0/16", true, "10.0.0.0/8"},
		{"fd00::/8", true, "fc00::/7"},
		{"64:ff9b:1::/48", true, "64:ff9b:1::/48"},
		{"255.255.255.255/32", true, "255.255.255.255/32"},
		{"0.0.0.0/0", false, ""},    // wider than any range
		{"::/0", false, ""},         // wider than any range
		{"8.8.8.0/24", false, ""},   // public
		{"10.0.0.0/7", false, ""},   // wider than 10/8
		{"2002::/16", false, ""},    // 6to4 is public as such
		{"64:ff9b::/96", false, ""}, // so is well-known NAT64
		{"2606:4700::/32", false, ""},
	}
	for _, tc := range cases {
		r, ok := Inside(netip.MustParsePrefix(tc.prefix))
		if ok != tc.ok || (ok && r.Prefix != netip.MustParsePrefix(tc.rng)) {
			t.Errorf("Inside(%s) = %v %v, want %v %s", tc.prefix, r.Prefix, ok, tc.ok, tc.rng)
		}
	}
	for _, bad := range []netip.Prefix{{}, netip.PrefixFrom(netip.MustParseAddr("127.0.0.1"), 8), netip.MustParsePrefix("::ffff:127.0.0.0/104")} {
		if _, ok := Inside(bad); ok {
			t.Errorf("Inside(%v) accepted an unmasked, invalid or mapped prefix", bad)
		}
	}
}

func TestRangesIsACopy(t *testing.T) {
	t.Parallel()
	r := Ranges()
	r[0].Class = Public
	if Ranges()[0].Class == Public {
		t.Fatal("Ranges exposes the table")
	}
	for _, r := range Ranges() {
		if r.Prefix.Masked() != r.Prefix || r.Class == Public || r.Class == Invalid || r.Source == "" {
			t.Errorf("bad table row %+v", r)
		}
	}
}

func TestClassString(t *testing.T) {
	t.Parallel()
	for c := Public; c <= Special; c++ {
		if s := c.String(); s == "" || s == "unknown" {
			t.Errorf("Class(%d) has no name", c)
		}
	}
	if Class(200).String() != "unknown" {
		t.Fatal("out-of-range class")
	}
}
