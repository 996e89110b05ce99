package netclass

import (
	"net/netip"
	"testing"
)

// FuzzClassify: any 16 bytes classify without panicking; the verdict names
// a range that contains the deciding address; an IPv4-mapped address agrees
// with its IPv4 form; and the IPv4 address in the last four bytes agrees
// with its mapped, NAT64 and 6to4 forms.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:c0a8:101::1", "2606:4700::1111", "fe80::1", "::", "ff02::1", "64:ff9b:1::1"} {
		b := netip.MustParseAddr(s).As16()
		f.Add(b[:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 16 {
			return
		}
		a := netip.AddrFrom16([16]byte(b[:16]))
		v := Classify(a)
		switch {
		case v.Class == Public:
			if v.Range.IsValid() || v.Wrap != Direct {
				t.Fatalf("Classify(%v) = %+v: public with a range or wrap", a, v)
			}
		case v.Class == Invalid:
			t.Fatalf("Classify(%v) = Invalid for an unzoned address", a)
		case v.Wrap == Direct && !v.Range.Contains(a.Unmap()):
			t.Fatalf("Classify(%v) = %+v: range does not contain the address", a, v)
		case v.Wrap != Direct && !v.Range.Addr().Is4():
			t.Fatalf("Classify(%v) = %+v: wrapped verdict with an IPv6 range", a, v)
		}
		if a.Is4In6() {
			if u := Classify(a.Unmap()); u != v {
				t.Fatalf("mapped %v: %+v, unmapped: %+v", a, v, u)
			}
		}
		if _, ok := Inside(netip.PrefixFrom(a, 128)); ok == v.Public() && v.Wrap == Direct && !a.Is4In6() {
			t.Fatalf("Inside(%v/128) = %v but Classify says %+v", a, ok, v)
		}
		checkWraps(t, [4]byte(b[12:16]))
	})
}
