package exit

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
)

// privateForms is every non-public form the exit must refuse before any
// rule: each class in IPv4 and IPv6, and IPv4-mapped, IPv4-compatible,
// IPv4-translated, NAT64 (both prefixes), 6to4 and Teredo forms.
var privateForms = []struct{ name, addr string }{
	{"loopback", "127.0.0.1"},
	{"loopback high", "127.1.2.3"},
	{"rfc1918 10", "10.0.0.5"},
	{"rfc1918 172.16", "172.16.0.1"},
	{"rfc1918 192.168", "192.168.1.1"},
	{"cloud metadata", "169.254.169.254"},
	{"cgnat", "100.64.0.1"},
	{"unspecified", "0.0.0.0"},
	{"this network", "0.1.2.3"},
	{"multicast", "224.0.0.1"},
	{"broadcast", "255.255.255.255"},
	{"reserved", "240.0.0.1"},
	{"ietf assignments", "192.0.0.1"},
	{"6to4 relay anycast", "192.88.99.1"},
	{"test-net-1", "192.0.2.1"},
	{"test-net-2", "198.51.100.1"},
	{"test-net-3", "203.0.113.1"},
	{"benchmarking", "198.18.0.1"},
	{"v6 loopback", "::1"},
	{"v6 unspecified", "::"},
	{"v6 link-local", "fe80::1"},
	{"ula fc", "fc00::1"},
	{"ula fd", "fd00::1"},
	{"site-local", "fec0::1"},
	{"v6 multicast link", "ff02::1"},
	{"v6 multicast global", "ff0e::1"},
	{"v6 documentation", "2001:db8::1"},
	{"v6 documentation 3fff", "3fff::1"},
	{"v6 benchmarking", "2001:2::1"},
	{"teredo", "2001:0:4136:e378:8000:63bf:3fff:fdd2"},
	{"discard", "100::1"},
	{"unassigned v6", "4000::1"},
	{"mapped loopback", "::ffff:127.0.0.1"},
	{"mapped private", "::ffff:10.0.0.5"},
	{"mapped metadata", "::ffff:169.254.169.254"},
	{"compatible loopback", "::127.0.0.1"},
	{"compatible private", "::10.0.0.5"},
	{"translated private", "::ffff:0:a00:5"},
	{"nat64 loopback", "64:ff9b::7f00:1"},
	{"nat64 private", "64:ff9b::a00:5"},
	{"nat64 metadata", "64:ff9b::a9fe:a9fe"},
	{"nat64 cgnat", "64:ff9b::6440:1"},
	{"local-use nat64 private", "64:ff9b:1::a00:5"},
	{"local-use nat64 public", "64:ff9b:1::101:101"},
	{"6to4 loopback", "2002:7f00:1::1"},
	{"6to4 private", "2002:a00:5::1"},
	{"6to4 192.168", "2002:c0a8:101::1"},
	{"6to4 metadata", "2002:a9fe:a9fe::1"},
}

// permissive are operator policies that accept widely; none may open a
// private address.
var permissive = []struct {
	name  string
	rules []string
	port  uint16
}{
	{"accept *:*", []string{"accept *:*"}, 443},
	{"accept *:443", []string{"accept *:443"}, 443},
	{"bitcoin and lightning", []string{"accept *:8333", "accept *:9735", "reject *:*"}, 8333},
}

// TestExitRefusesPrivateFormsFirst: under permissive operator rules, with
// no range opened, every non-public form is refused before any rule, as an
// IP literal, as a name's DNS answer, and in RESOLVE, and nothing is dialed.
// A public address under the same policy is dialed (the control).
func TestExitRefusesPrivateFormsFirst(t *testing.T) {
	t.Parallel()
	for _, pol := range permissive {
		t.Run(pol.name, func(t *testing.T) {
			t.Parallel()
			p, err := NewPolicy(pol.rules, nil)
			if err != nil {
				t.Fatal(err)
			}
			port := strconv.Itoa(int(pol.port))
			for _, f := range privateForms {
				a := netip.MustParseAddr(f.addr)
				literal := netip.AddrPortFrom(a, pol.port).String()
				rec := &recorder{}
				d := mustDialer(t, p, WithResolver(staticResolver(f.addr)), WithDialFunc(rec.dial))
				for _, target := range []string{literal, "rebind.example:" + port} {
					_, err := d.Dial(t.Context(), mustTarget(t, target))
					var pe *PolicyError
					if !errors.Is(err, circuit.ErrExitPolicy) || !errors.As(err, &pe) || !pe.NotPublic {
						t.Errorf("%s: Dial(%s) = %v, want a refusal before any rule", f.name, target, err)
					}
				}
				if _, err := d.Resolve(t.Context(), "rebind.example"); !errors.Is(err, circuit.ErrExitPolicy) {
					t.Errorf("%s: Resolve = %v, want ErrExitPolicy", f.name, err)
				}
				if p.AllowsAddr(a) {
					t.Errorf("%s: AllowsAddr = true", f.name)
				}
				if calls := rec.got(); len(calls) != 0 {
					t.Errorf("%s: dialed %v", f.name, calls)
				}
			}
			// The control: a public address passes the same policy and
			// reaches the dial func (which refuses anything but loopback).
			rec := &recorder{}
			_, err = mustDialer(t, p, WithDialFunc(rec.dial)).Dial(t.Context(), mustTarget(t, "1.1.1.1:"+port))
			if errors.Is(err, circuit.ErrExitPolicy) || len(rec.got()) != 1 {
				t.Fatalf("public control: Dial = %v, dialed %v; want one dial", err, rec.got())
			}
		})
	}
}

// TestExitOpensLoopbackOnlyWhenAsked: the explicit setting opens loopback,
// which a real listener then answers, by literal, by name and in its
// IPv4-mapped form; it opens nothing else, and the rules still judge
// loopback (accept *:443 does not reach the listener's port).
func TestExitOpensLoopbackOnlyWhenAsked(t *testing.T) {
	t.Parallel()
	l := listenLoopback(t)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	hi := func(t *testing.T, c net.Conn) {
		t.Helper()
		defer c.Close()
		buf := make([]byte, 2)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
			t.Fatalf("read %q, %v; want hi from the loopback listener", buf, err)
		}
	}

	shut, err := NewPolicy([]string{"accept *:*"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mustDialer(t, shut).Dial(t.Context(), mustTarget(t, "127.0.0.1:"+port)); !errors.Is(err, circuit.ErrExitPolicy) {
		t.Fatalf("accept *:* without the setting: Dial(loopback) = %v, want ErrExitPolicy", err)
	}

	open, err := ParsePrivateRanges([]string{"loopback"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPolicy([]string{"accept *:*"}, open)
	if err != nil {
		t.Fatal(err)
	}
	d := mustDialer(t, p, WithResolver(staticResolver("127.0.0.1")))
	for _, target := range []string{"127.0.0.1:" + port, "[::ffff:127.0.0.1]:" + port, "web.example:" + port} {
		c, err := d.Dial(t.Context(), mustTarget(t, target))
		if err != nil {
			t.Fatalf("loopback opened: Dial(%s) = %v", target, err)
		}
		hi(t, c)
	}
	if ip, err := d.Resolve(t.Context(), "web.example"); err != nil || ip != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("loopback opened: Resolve = %v, %v", ip, err)
	}

	// Everything else stays shut, the wrapped forms of loopback included.
	for _, f := range privateForms {
		a := netip.MustParseAddr(f.addr)
		if a.Unmap().IsLoopback() {
			continue
		}
		rec := &recorder{}
		_, err := mustDialer(t, p, WithDialFunc(rec.dial)).Dial(t.Context(), mustTarget(t, netip.AddrPortFrom(a, 443).String()))
		if !errors.Is(err, circuit.ErrExitPolicy) || len(rec.got()) != 0 {
			t.Errorf("loopback opened: %s: Dial = %v, dialed %v; want a refusal and no dial", f.name, err, rec.got())
		}
	}

	// An opened range meets the operator's rules like any other.
	narrow, err := NewPolicy([]string{"accept *:443", "reject *:*"}, open)
	if err != nil {
		t.Fatal(err)
	}
	_, err = mustDialer(t, narrow).Dial(t.Context(), mustTarget(t, "127.0.0.1:"+port))
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.NotPublic || pe.Index != 1 {
		t.Fatalf("accept *:443 with loopback opened: Dial(loopback:%s) = %v, want refused by rule 1", port, err)
	}
}

// TestExitOpensIPv6Loopback: the "loopback" setting opens ::1 too, against
// a real listener when the host has IPv6 loopback.
func TestExitOpensIPv6Loopback(t *testing.T) {
	t.Parallel()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			_ = c.Close()
		}
		accepted <- err
	}()
	target := mustTarget(t, l.Addr().String())
	if _, err := mustDialer(t, DefaultPolicy()).Dial(t.Context(), target); !errors.Is(err, circuit.ErrExitPolicy) {
		t.Fatalf("default policy: Dial([::1]) = %v, want ErrExitPolicy", err)
	}
	c, err := mustDialer(t, loopbackPolicy(t)).Dial(t.Context(), target)
	if err != nil {
		t.Fatalf("loopback opened: Dial([::1]) = %v", err)
	}
	_ = c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
}
