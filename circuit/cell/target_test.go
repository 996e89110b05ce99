package cell

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// mustTarget parses a target the test knows is valid.
func mustTarget(s string) Target {
	t, err := ParseTarget(s)
	if err != nil {
		panic("test target " + s + ": " + err.Error())
	}
	return t
}

// maxName returns a name of n bytes made of 63-byte labels.
func maxName(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat("a", min(maxLabelLen, n-b.Len())))
	}
	return b.String()
}

type targetGolden struct {
	Valid []struct {
		In        string `json:"in"`
		Canonical string `json:"canonical"`
	} `json:"valid"`
	Invalid    []string `json:"invalid"`
	HostsValid []struct {
		In        string `json:"in"`
		Canonical string `json:"canonical"`
	} `json:"hosts_valid"`
	HostsInvalid []string `json:"hosts_invalid"`
}

func loadTargetGolden(tb testing.TB) targetGolden {
	tb.Helper()
	raw, err := os.ReadFile("testdata/targets.json")
	if err != nil {
		tb.Fatal(err)
	}
	var g targetGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		tb.Fatal(err)
	}
	if len(g.Valid) == 0 || len(g.Invalid) == 0 || len(g.HostsValid) == 0 || len(g.HostsInvalid) == 0 {
		tb.Fatal("testdata/targets.json lacks a section")
	}
	return g
}

// TestTargetGolden runs testdata/targets.json: must-pass cases parse to
// their canonical form, which parses to the same Target and is accepted by
// the BEGIN decoder; must-fail cases fail with ErrBadTarget (ErrBadHost for
// hosts) and never quote the input in the error.
func TestTargetGolden(t *testing.T) {
	t.Parallel()
	g := loadTargetGolden(t)
	for _, tc := range g.Valid {
		t.Run("valid/"+tc.In, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTarget(tc.In)
			if err != nil {
				t.Fatalf("ParseTarget: %v", err)
			}
			if got.String() != tc.Canonical {
				t.Fatalf("String() = %q, want %q", got.String(), tc.Canonical)
			}
			again, err := ParseTarget(tc.Canonical)
			if err != nil || again != got {
				t.Fatalf("ParseTarget(canonical) = %+v, %v; want %+v", again, err, got)
			}
			if c, err := parseCanonicalTarget(tc.Canonical); err != nil || c != got {
				t.Fatalf("canonical form refused: %v", err)
			}
			if tc.In != tc.Canonical {
				if _, err := parseCanonicalTarget(tc.In); !errors.Is(err, ErrBadTarget) {
					t.Fatalf("BEGIN would accept the non-canonical %q: %v", tc.In, err)
				}
			}
			nt, err := NewTarget(got.Host(), got.Port())
			if err != nil || nt != got {
				t.Fatalf("NewTarget(Host, Port) = %+v, %v; want %+v", nt, err, got)
			}
		})
	}
	for _, in := range g.Invalid {
		t.Run("invalid/"+in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseTarget(in)
			if !errors.Is(err, ErrBadTarget) || !got.IsZero() {
				t.Fatalf("ParseTarget = %+v, %v; want zero and ErrBadTarget", got, err)
			}
			if len(in) > 3 && strings.Contains(err.Error(), in) {
				t.Fatalf("error %q quotes the target", err)
			}
		})
	}
	for _, tc := range g.HostsValid {
		t.Run("host/"+tc.In, func(t *testing.T) {
			t.Parallel()
			got, err := CheckHost(tc.In)
			if err != nil || got != tc.Canonical {
				t.Fatalf("CheckHost = %q, %v; want %q", got, err, tc.Canonical)
			}
			if again, err := CheckHost(got); err != nil || again != got {
				t.Fatalf("CheckHost(canonical) = %q, %v", again, err)
			}
		})
	}
	for _, in := range g.HostsInvalid {
		t.Run("badhost/"+in, func(t *testing.T) {
			t.Parallel()
			if got, err := CheckHost(in); !errors.Is(err, ErrBadHost) {
				t.Fatalf("CheckHost = %q, %v; want ErrBadHost", got, err)
			}
		})
	}
}

func TestTargetAccessors(t *testing.T) {
	t.Parallel()
	v6 := netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		in    string
		host  string
		port  uint16
		addr  netip.Addr
		onion bool
	}{
		{"Example.COM:443", "example.com", 443, netip.Addr{}, false},
		{"1.2.3.4:8333", "1.2.3.4", 8333, netip.MustParseAddr("1.2.3.4"), false},
		{"[2001:db8::1]:9735", "2001:db8::1", 9735, v6, false},
		{"[::ffff:10.0.0.1]:1", "10.0.0.1", 1, netip.MustParseAddr("10.0.0.1"), false},
		{"abc.ONION:80", "abc.onion", 80, netip.Addr{}, true},
		{"www.abc.onion.:80", "www.abc.onion", 80, netip.Addr{}, true},
		{"onion:80", "onion", 80, netip.Addr{}, false},
		{"onion.example:80", "onion.example", 80, netip.Addr{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			t.Parallel()
			got := mustTarget(tc.in)
			a, ok := got.Addr()
			if got.Host() != tc.host || got.Port() != tc.port || a != tc.addr || ok != tc.addr.IsValid() || got.IsOnion() != tc.onion || got.IsZero() {
				t.Fatalf("got host %q port %d addr %v,%v onion %v zero %v",
					got.Host(), got.Port(), a, ok, got.IsOnion(), got.IsZero())
			}
			if a.Is4In6() || a.Zone() != "" {
				t.Fatalf("Addr %v is mapped or zoned", a)
			}
		})
	}
	var zero Target
	if !zero.IsZero() || zero.String() != "" || zero.Host() != "" || zero.Port() != 0 || zero.IsOnion() {
		t.Fatalf("zero Target: %+v %q", zero, zero.String())
	}
	if _, ok := zero.Addr(); ok {
		t.Fatal("zero Target has an address")
	}
}

func TestNewTarget(t *testing.T) {
	t.Parallel()
	tests := []struct {
		host string
		port uint16
		want string // "" = must fail with ErrBadTarget
	}{
		{"example.com", 443, "example.com:443"},
		{"EXAMPLE.com.", 80, "example.com:80"},
		{"1.2.3.4", 8333, "1.2.3.4:8333"},
		{"2001:db8::1", 8333, "[2001:db8::1]:8333"}, // bitcoind sends IPv6 as DOMAINNAME text
		{"::ffff:1.2.3.4", 9735, "1.2.3.4:9735"},
		{"x.onion", 65535, "x.onion:65535"},
		{maxName(253), 1, maxName(253) + ":1"},
		{maxName(253), 10, ""}, // 256 bytes
		{maxName(250), 65535, ""},
		{"example.com", 0, ""},
		{"", 80, ""},
		{"[::1]", 80, ""},
		{"fe80::1%eth0", 80, ""},
		{"a b", 80, ""},
		{"example.com:80", 80, ""},
		{"2130706433", 80, ""},
		{"1.2.3.256", 80, ""},
		{"a.." + "b", 80, ""},
		{strings.Repeat("a", 64), 80, ""},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			got, err := NewTarget(tc.host, tc.port)
			if tc.want == "" {
				if !errors.Is(err, ErrBadTarget) || !errors.Is(err, ErrMalformed) || !got.IsZero() {
					t.Fatalf("NewTarget = %+v, %v; want ErrBadTarget", got, err)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("NewTarget = %q, %v; want %q", got.String(), err, tc.want)
			}
			if again := mustTarget(tc.want); again != got {
				t.Fatalf("ParseTarget(%q) = %+v, want %+v", tc.want, again, got)
			}
		})
	}
}

// TestTargetMaxLen: the longest canonical target fits BEGIN's one-byte
// target_len exactly, and one byte more is refused by every constructor.
func TestTargetMaxLen(t *testing.T) {
	t.Parallel()
	ok := maxName(249) + ":65535"
	if len(ok) != MaxTargetLen {
		t.Fatalf("test target is %d bytes", len(ok))
	}
	b, err := (&Begin{ServiceExit, mustTarget(ok)}).AppendBinary(nil)
	if err != nil || len(b) != 2+MaxTargetLen || b[1] != MaxTargetLen {
		t.Fatalf("AppendBinary = %x, %v", b, err)
	}
	long := maxName(250) + ":65535"
	if _, err := ParseTarget(long); !errors.Is(err, ErrBadTarget) {
		t.Fatalf("ParseTarget(%d bytes) = %v", len(long), err)
	}
	if _, err := ParseTarget(strings.Repeat("a", 1<<20) + ":80"); !errors.Is(err, ErrBadTarget) {
		t.Fatalf("ParseTarget(1 MiB) = %v", err)
	}
}

// FuzzTarget: whatever ParseTarget accepts has a canonical form that parses
// back to the same Target, is a fixed point, fits BEGIN, and round-trips
// through NewTarget and the BEGIN codec; failures wrap ErrBadTarget.
func FuzzTarget(f *testing.F) {
	g := loadTargetGolden(f)
	for _, tc := range g.Valid {
		f.Add(tc.In)
	}
	for _, in := range g.Invalid {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) || !got.IsZero() {
				t.Fatalf("ParseTarget(%q) = %+v, %v; want zero and ErrBadTarget", s, got, err)
			}
			return
		}
		c := got.String()
		if got.IsZero() || c == "" || len(c) > MaxTargetLen {
			t.Fatalf("ParseTarget(%q) = %+v (%q)", s, got, c)
		}
		again, err := ParseTarget(c)
		if err != nil || again != got || again.String() != c {
			t.Fatalf("%q -> %q -> %+v, %v; want %+v", s, c, again, err, got)
		}
		if nt, err := NewTarget(got.Host(), got.Port()); err != nil || nt != got {
			t.Fatalf("NewTarget(%q, %d) = %+v, %v; want %+v", got.Host(), got.Port(), nt, err, got)
		}
		if h, err := CheckHost(got.Host()); err != nil || h != got.Host() {
			t.Fatalf("CheckHost(%q) = %q, %v", got.Host(), h, err)
		}
		b, err := (&Begin{ServiceExit, got}).AppendBinary(nil)
		if err != nil {
			t.Fatalf("AppendBinary: %v", err)
		}
		var m Begin
		if err := m.UnmarshalBinary(b); err != nil || m.Target != got {
			t.Fatalf("BEGIN round trip = %+v, %v; want %+v", m.Target, err, got)
		}
		if a, ok := got.Addr(); ok != a.IsValid() || a.Is4In6() || a.Zone() != "" || ok && got.IsOnion() {
			t.Fatalf("Addr() = %v, %v for %q", a, ok, c)
		}
	})
}
