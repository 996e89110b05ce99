package exit

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/co-infuse/co-infuse/circuit"
)

func TestDefaultPolicyDecisions(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	loop, err := NewPolicy(nil, LoopbackRanges())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		ap       string
		accept   bool // under DefaultPolicy
		loopback bool // under NewPolicy(nil, LoopbackRanges())
	}{
		{"public v4", "1.1.1.1:443", true, true},
		{"public v4 bitcoin", "93.184.216.34:8333", true, true},
		{"public v6", "[2606:4700::1111]:443", true, true},
		{"rfc1918 10/8", "10.1.2.3:80", false, false},
		{"rfc1918 172.16/12", "172.31.255.255:80", false, false},
		{"172.32 is public", "172.32.0.1:80", true, true},
		{"rfc1918 192.168/16", "192.168.1.1:80", false, false},
		{"loopback v4", "127.0.0.1:8080", false, true},
		{"loopback v4 high", "127.255.0.9:8080", false, true},
		{"loopback v6", "[::1]:8080", false, true},
		{"unspecified v4 (Linux dials it as loopback)", "0.0.0.0:80", false, false},
		{"this network", "0.1.2.3:80", false, false},
		{"unspecified v6", "[::]:80", false, false},
		{"link-local v4", "169.254.169.254:80", false, false},
		{"link-local v6", "[fe80::1]:80", false, false},
		{"cgnat", "100.64.0.1:80", false, false},
		{"cgnat top", "100.127.255.254:80", false, false},
		{"100.128 is public", "100.128.0.1:80", true, true},
		{"multicast v4", "224.0.0.251:5353", false, false},
		{"multicast v6", "[ff02::fb]:5353", false, false},
		{"broadcast", "255.255.255.255:80", false, false},
		{"reserved 240/4", "240.0.0.1:80", false, false},
		{"test-net-1", "192.0.2.10:80", false, false},
		{"test-net-3", "203.0.113.7:80", false, false},
		{"benchmarking", "198.18.0.1:80", false, false},
		{"doc v6", "[2001:db8::1]:80", false, false},
		{"ula", "[fd12:3456::1]:80", false, false},
		{"site-local", "[fec0::1]:80", false, false},
		{"v4-mapped private", "[::ffff:10.0.0.1]:80", false, false},
		{"v4-mapped loopback", "[::ffff:127.0.0.1]:80", false, true},
		{"v4-mapped public", "[::ffff:1.1.1.1]:443", true, true},
		{"v4-compatible", "[::10.0.0.1]:80", false, false},
		{"v4-translated", "[::ffff:0:a00:1]:80", false, false},
		{"nat64 private", "[64:ff9b::a00:1]:80", false, false},
		{"nat64 loopback stays shut", "[64:ff9b::7f00:1]:80", false, false},
		{"6to4 loopback stays shut", "[2002:7f00:1::1]:80", false, false},
		{"local-use nat64", "[64:ff9b:1::101:101]:443", false, false},
		{"nat64 public", "[64:ff9b::101:101]:443", true, true},
		{"6to4 private", "[2002:c0a8:101::1]:80", false, false},
		{"6to4 public", "[2002:101:101::1]:443", true, true},
		{"teredo", "[2001::1]:80", false, false},
		{"smtp public", "1.1.1.1:25", false, false},
		{"smtp v6", "[2606:4700::1111]:25", false, false},
		{"submission ok", "1.1.1.1:587", true, true},
		{"opened loopback still meets the rules", "127.0.0.1:25", false, false},
		{"port zero", "1.1.1.1:0", false, false},
		{"zoned", "[fe80::1%eth0]:80", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ap := netip.MustParseAddrPort(tc.ap)
			for _, pc := range []struct {
				p    *Policy
				want bool
			}{{p, tc.accept}, {loop, tc.loopback}} {
				err := pc.p.Check(ap)
				if pc.want && err != nil {
					t.Fatalf("Check(%v) = %v, want accept", ap, err)
				}
				if !pc.want && !errors.Is(err, circuit.ErrExitPolicy) {
					t.Fatalf("Check(%v) = %v, want ErrExitPolicy", ap, err)
				}
			}
		})
	}
}

func TestPolicyErrorNamesRule(t *testing.T) {
	t.Parallel()
	p, err := NewPolicy([]string{"reject 8.8.0.0/16:*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Check(netip.MustParseAddrPort("8.8.4.4:443"))
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.NotPublic {
		t.Fatalf("error %v is not a rule's *PolicyError", err)
	}
	if pe.Rule.String() != "reject 8.8.0.0/16:*" {
		t.Fatalf("refusing rule %q, want reject 8.8.0.0/16:*", pe.Rule)
	}
	if want := `exit policy: refused by rule 0 "reject 8.8.0.0/16:*"`; err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

// TestPolicyErrorNotPublic: a non-public address is refused before any
// rule, by its class and registry range, and the error never names it.
func TestPolicyErrorNotPublic(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ap, want string
	}{
		{"10.9.8.7:443", "exit policy: private address (10.0.0.0/8), refused before any rule"},
		{"[::ffff:169.254.169.254]:80", "exit policy: link-local address (169.254.0.0/16), refused before any rule"},
		{"[64:ff9b::a09:807]:443", "exit policy: NAT64 address embedding a non-public IPv4 address (private, 10.0.0.0/8), refused before any rule"},
		{"[2002:a09:807::1]:443", "exit policy: 6to4 address embedding a non-public IPv4 address (private, 10.0.0.0/8), refused before any rule"},
		{"[fd12:3456::1]:443", "exit policy: private address (fc00::/7), refused before any rule"},
	}
	p, err := NewPolicy([]string{"accept *:*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range cases {
		err := p.Check(netip.MustParseAddrPort(tc.ap))
		var pe *PolicyError
		if !errors.As(err, &pe) || !pe.NotPublic || !errors.Is(err, circuit.ErrExitPolicy) {
			t.Fatalf("Check(%s) = %v, want a NotPublic *PolicyError", tc.ap, err)
		}
		if err.Error() != tc.want {
			t.Errorf("Check(%s) = %q, want %q", tc.ap, err, tc.want)
		}
		if strings.Contains(err.Error(), "9.8.7") || strings.Contains(err.Error(), "a09:807") || strings.Contains(err.Error(), "3456") {
			t.Errorf("error %q names the address", err)
		}
	}
}

func TestPolicyOrderAndImplicitReject(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]string{"reject 1.2.3.4:*", "accept 1.2.3.0/24:80-443", "accept [2606:4700::]/32:*"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ap   string
		want bool
	}{
		{"1.2.3.4:80", false},
		{"1.2.3.5:80", true},
		{"1.2.3.5:443", true},
		{"1.2.3.5:444", false}, // implicit reject *:*
		{"9.9.9.9:80", false},
		{"[2606:4700::5]:25", true},
	}
	for _, tc := range cases {
		err := p.Check(netip.MustParseAddrPort(tc.ap))
		if (err == nil) != tc.want {
			t.Errorf("Check(%s) = %v, want accept=%v", tc.ap, err, tc.want)
		}
	}
	var pe *PolicyError
	if err := p.Check(netip.MustParseAddrPort("9.9.9.9:80")); !errors.As(err, &pe) || pe.Index != -1 {
		t.Fatalf("implicit refusal = %v, want Index -1", err)
	}
}

// TestNewPolicyOpenedRanges: an opened range is judged by the rules like a
// public one; everything else non-public stays shut whatever the rules say.
func TestNewPolicyOpenedRanges(t *testing.T) {
	t.Parallel()
	open := append(LoopbackRanges(), netip.MustParsePrefix("10.8.0.0/16"))
	p, err := NewPolicy([]string{"reject 127.0.0.1:9735", "accept 10.8.0.0/16:8333", "reject 10.0.0.0/8:*"}, open)
	if err != nil {
		t.Fatal(err)
	}
	for ap, want := range map[string]bool{
		"127.0.0.1:9735":          false, // operator narrows loopback
		"127.0.0.1:9736":          true,  // loopback opened
		"[::1]:9736":              true,
		"[::ffff:127.0.0.1]:9736": true,  // the same address to the kernel
		"10.8.1.1:8333":           true,  // opened, and a rule accepts it
		"10.8.1.1:8334":           false, // opened, but the operator's reject comes first
		"10.9.1.1:8333":           false, // not opened
		"0.0.0.0:9736":            false, // unspecified is not loopback
		"[::]:9736":               false,
		"[64:ff9b::7f00:1]:9736":  false, // NAT64 of an opened address stays shut
		"[2002:7f00:1::]:9736":    false, // so does 6to4
		"1.1.1.1:25":              false,
		"1.1.1.1:443":             true,
	} {
		if err := p.Check(netip.MustParseAddrPort(ap)); (err == nil) != want {
			t.Errorf("Check(%s) = %v, want accept=%v", ap, err, want)
		}
	}
	if got := p.OpenPrivate(); len(got) != 3 {
		t.Fatalf("OpenPrivate() = %v", got)
	}
}

func TestNewPolicyRefusesBadInput(t *testing.T) {
	t.Parallel()
	pfx := netip.MustParsePrefix
	cases := []struct {
		name  string
		rules []string
		open  []netip.Prefix
		want  error
	}{
		{"bad rule", []string{"accept *:*", "nonsense"}, nil, ErrBadRule},
		{"accept of a shut private range", []string{"accept 10.0.0.0/8:8333"}, nil, ErrBadRule},
		{"accept of loopback without opening it", []string{"accept 127.0.0.0/8:*"}, nil, ErrBadRule},
		{"accept of a ULA", []string{"accept [fd00::]/8:*"}, LoopbackRanges(), ErrBadRule},
		{"open everything", nil, []netip.Prefix{pfx("0.0.0.0/0")}, ErrBadPrivateRange},
		{"open public", nil, []netip.Prefix{pfx("8.8.8.0/24")}, ErrBadPrivateRange},
		{"open wider than a range", nil, []netip.Prefix{pfx("10.0.0.0/7")}, ErrBadPrivateRange},
		{"open nat64", nil, []netip.Prefix{pfx("64:ff9b::/96")}, ErrBadPrivateRange},
		{"open 6to4", nil, []netip.Prefix{pfx("2002::/16")}, ErrBadPrivateRange},
		{"unmasked", nil, []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("127.0.0.1"), 8)}, ErrBadPrivateRange},
		{"mapped", nil, []netip.Prefix{pfx("::ffff:127.0.0.0/104")}, ErrBadPrivateRange},
		{"invalid", nil, []netip.Prefix{{}}, ErrBadPrivateRange},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewPolicy(tc.rules, tc.open); !errors.Is(err, tc.want) {
				t.Fatalf("NewPolicy = %v, want %v", err, tc.want)
			}
		})
	}
	// Rejects of private ranges, and accepts that an opened range reaches
	// in part, are fine.
	for _, ok := range []struct {
		rules []string
		open  []netip.Prefix
	}{
		{[]string{"reject 10.0.0.0/8:*", "accept *:443"}, nil},
		{[]string{"accept 10.0.0.0/8:8333"}, []netip.Prefix{pfx("10.8.0.0/16")}},
		{[]string{"accept 127.0.0.1:8080", "reject *:*"}, LoopbackRanges()},
	} {
		if _, err := NewPolicy(ok.rules, ok.open); err != nil {
			t.Errorf("NewPolicy(%q, %v) = %v", ok.rules, ok.open, err)
		}
	}
	_, err := NewPolicy([]string{"accept 10.0.0.0/8:8333"}, nil)
	if err == nil || !strings.Contains(err.Error(), "exit.allow_private_ranges") || !strings.Contains(err.Error(), "policy[0]") {
		t.Fatalf("dead accept rule: %v; want an error naming the rule and exit.allow_private_ranges", err)
	}
}

func TestParsePrivateRanges(t *testing.T) {
	t.Parallel()
	got, err := ParsePrivateRanges([]string{"loopback", "10.8.0.0/16", "fd00::/8", "169.254.169.254", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.0/8", "::1/128", "10.8.0.0/16", "fd00::/8", "169.254.169.254/32", "::1/128"}
	if len(got) != len(want) {
		t.Fatalf("ParsePrivateRanges = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].String() != want[i] {
			t.Fatalf("ParsePrivateRanges = %v, want %v", got, want)
		}
	}
	if got, err := ParsePrivateRanges(nil); err != nil || got != nil {
		t.Fatalf("ParsePrivateRanges(nil) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "Loopback", "private", "0.0.0.0/0", "::/0", "1.1.1.1", "10.0.0.1/8", "[::1]/128", "fe80::1%eth0", "::ffff:127.0.0.1", "64:ff9b::/96", "127.0.0.0/8:*"} {
		_, err := ParsePrivateRanges([]string{"loopback", bad})
		if !errors.Is(err, ErrBadPrivateRange) || !strings.Contains(err.Error(), "allow_private_ranges[1]") {
			t.Errorf("ParsePrivateRanges(%q) = %v, want ErrBadPrivateRange naming entry 1", bad, err)
		}
	}
}

func TestAllowsPort(t *testing.T) {
	t.Parallel()
	d := DefaultPolicy()
	narrow, err := ParsePolicy([]string{"reject *4:8333", "accept *:8333", "accept 1.2.3.0/24:9000", "reject *:*"})
	if err != nil {
		t.Fatal(err)
	}
	private, err := ParsePolicy([]string{"accept 10.0.0.0/8:9000", "accept *:443", "reject *:*"})
	if err != nil {
		t.Fatal(err)
	}
	opened, err := NewPolicy([]string{"accept 10.8.0.0/16:9000", "reject *:*"}, []netip.Prefix{netip.MustParsePrefix("10.8.0.0/16")})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p    *Policy
		port uint16
		want bool
	}{
		{d, 80, true}, {d, 443, true}, {d, 8333, true}, {d, 25, false}, {d, 0, false},
		{private, 9000, false}, // only a shut private range accepts it
		{private, 443, true},
		{opened, 9000, true},
		{narrow, 8333, true}, // still open on IPv6
		{narrow, 9000, true},
		{narrow, 80, false},
	}
	for _, tc := range cases {
		if got := tc.p.AllowsPort(tc.port); got != tc.want {
			t.Errorf("%v AllowsPort(%d) = %v, want %v", tc.p, tc.port, got, tc.want)
		}
	}
}

func TestAllowsAddr(t *testing.T) {
	t.Parallel()
	p, err := ParsePolicy([]string{"reject 5.5.5.5:1-100", "reject 5.5.5.5:101-65535", "accept *:*"})
	if err != nil {
		t.Fatal(err)
	}
	partial, err := ParsePolicy([]string{"reject 6.6.6.6:1-100", "accept 6.6.6.6:50-200"})
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultPolicy()
	cases := []struct {
		p    *Policy
		a    string
		want bool
	}{
		{p, "5.5.5.5", false}, // every port refused by two rules
		{p, "5.5.5.6", true},
		{partial, "6.6.6.6", true}, // 101..200 open
		{d, "10.0.0.1", false},
		{d, "::ffff:192.168.0.1", false},
		{d, "64:ff9b::c0a8:1", false},
		{d, "64:ff9b::101:101", true},
		{p, "127.0.0.1", false}, // accept *:* does not open loopback
		{d, "1.1.1.1", true},
		{d, "2606:4700::1111", true},
	}
	for _, tc := range cases {
		if got := tc.p.AllowsAddr(netip.MustParseAddr(tc.a)); got != tc.want {
			t.Errorf("AllowsAddr(%s) = %v, want %v", tc.a, got, tc.want)
		}
	}
}

func TestPolicyYAMLRoundTrip(t *testing.T) {
	t.Parallel()
	type cfg struct {
		Policy *Policy `yaml:"policy"`
	}
	in := "policy:\n  - accept 127.0.0.0/8:*\n  - reject *:25\n  - accept [::1]:80-443\n"
	var c cfg
	if err := yaml.Unmarshal([]byte(in), &c); err != nil {
		t.Fatal(err)
	}
	want := []string{"accept 127.0.0.0/8:*", "reject *:25", "accept [::1]/128:80-443"}
	if got := c.Policy.Strings(); !reflect.DeepEqual(got, want) {
		t.Fatalf("parsed %q, want %q", got, want)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var back cfg
	if err := yaml.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Policy.Rules(), c.Policy.Rules()) {
		t.Fatalf("YAML round trip changed the policy:\n%s", out)
	}
	if err := yaml.Unmarshal([]byte("policy: [\"reject *:0\"]"), &c); !errors.Is(err, ErrBadRule) {
		t.Fatalf("bad YAML rule: %v, want ErrBadRule", err)
	}
}

func TestAllowedPorts(t *testing.T) {
	t.Parallel()
	parse := func(lines ...string) *Policy {
		p, err := ParsePolicy(lines)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name string
		p    *Policy
		want []PortRange
	}{
		{"default", DefaultPolicy(), []PortRange{{1, 24}, {26, 65535}}},
		{"nothing", parse(), nil},
		{"web only", parse("accept *:80", "accept *:443", "accept *:81-442"), []PortRange{{80, 443}}},
		{"bitcoin and lightning", parse("reject 10.0.0.0/8:*", "accept *:8333", "accept *:9735", "reject *:*"), []PortRange{{8333, 8333}, {9735, 9735}}},
		{"top port", parse("reject *:1-65534", "accept *:*"), []PortRange{{65535, 65535}}},
		{"v6 still open", parse("reject *4:443", "accept *:443"), []PortRange{{443, 443}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := tc.p.AllowedPorts()
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("AllowedPorts() = %v, want %v", got, tc.want)
			}
			// Agrees with AllowsPort on every port.
			in := func(port uint16) bool {
				for _, r := range got {
					if r.Lo <= port && port <= r.Hi {
						return true
					}
				}
				return false
			}
			for port := 1; port <= 65535; port++ {
				if in(uint16(port)) != tc.p.AllowsPort(uint16(port)) {
					t.Fatalf("port %d: ranges say %v, AllowsPort says %v", port, in(uint16(port)), !in(uint16(port)))
				}
			}
		})
	}
}
