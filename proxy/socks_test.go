package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/connmgr"
	"golang.org/x/net/proxy"

	"github.com/co-infuse/co-infuse/circuit"
)

// TestSOCKSBitcoindBytes replays bitcoind's exact SOCKS5 exchange
// (netbase.cpp Socks5(), INTEROP.md §1.5): isolation greeting 05 02 00 02,
// RFC 1929 auth, CONNECT with ATYP 3 even for IP literals.
func TestSOCKSBitcoindBytes(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, nil)
	cases := []struct {
		name, host, want string
		auth             bool
	}{
		{"isolated onion", testOnion(7), testOnion(7) + ":8333", true},
		{"isolated ipv4 text", "1.2.3.4", "1.2.3.4:8333", true},
		{"isolated ipv6 text", "2001:db8::1", "[2001:db8::1]:8333", true},
		{"no auth name", "seed.bitcoin.example", "seed.bitcoin.example:8333", false},
		{"canonical name", "Seed.Bitcoin.Example.", "seed.bitcoin.example:8333", false},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			user := fmt.Sprintf("0123456789abcdef-%d", i)
			if tc.auth {
				c.send(5, 2, 0, 2)
				c.expect(5, 2)
				c.send(append(append(append([]byte{1, byte(len(user))}, user...), byte(len(user))), user...)...)
				c.expect(1, 0)
			} else {
				c.send(5, 1, 0)
				c.expect(5, 0)
			}
			c.send(socksDomain(1, tc.host, 8333)...)
			c.expect(5, 0, 0, 1, 0, 0, 0, 0, 0, 0)
			c.send('p', 'i', 'n', 'g')
			c.expect('p', 'i', 'n', 'g')
			want := Isolation{}
			if tc.auth {
				want = Isolation{user, user}
			}
			found := false
			for _, call := range f.got() {
				if call.target == tc.want {
					found = true
					if call.iso != want {
						t.Fatalf("Dial got isolation %+v, want %+v", call.iso, want)
					}
				}
			}
			if !found {
				t.Fatalf("Dial never saw target %q; calls %+v", tc.want, f.got())
			}
		})
	}
}

// TestSOCKSXNetProxy dials through golang.org/x/net/proxy.SOCKS5 as lnd's
// tor package does, with stream isolation credentials.
func TestSOCKSXNetProxy(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, nil)
	cases := []struct{ target, want string }{
		{"peer.example:9735", "peer.example:9735"},
		{"93.184.216.34:9735", "93.184.216.34:9735"}, // ATYP 1
		{"[2001:db8::7]:9735", "[2001:db8::7]:9735"}, // ATYP 4
		{"[::ffff:1.2.3.4]:9735", "1.2.3.4:9735"},    // x/net sends it as IPv4
		{testOnion(8) + ":9735", testOnion(8) + ":9735"},
	}
	for _, tc := range cases {
		t.Run(tc.target, func(t *testing.T) {
			t.Parallel()
			iso := Isolation{"8f2c1a9e3b4d5c6f", "a1b2c3d4e5f60718"}
			d, err := proxy.SOCKS5("tcp", addr, &proxy.Auth{User: iso.Username, Password: iso.Password}, proxy.Direct)
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.Dial("tcp", tc.target)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
				t.Fatalf("echo %q, %v", buf, err)
			}
			for _, call := range f.got() {
				if call.target == tc.want && call.iso == iso {
					return
				}
			}
			t.Fatalf("Dial never saw %q with %+v; calls %+v", tc.want, iso, f.got())
		})
	}
}

// TestSOCKSIsolation: each credential pair reaches Dial as its own
// Isolation, the same pair always as the same value.
func TestSOCKSIsolation(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, nil)
	pairs := []Isolation{{"a", "1"}, {"b", "2"}, {"a", "1"}, {"a", "2"}}
	for _, p := range pairs {
		d, err := proxy.SOCKS5("tcp", addr, &proxy.Auth{User: p.Username, Password: p.Password}, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Dial("tcp", "same.example:80")
		if err != nil {
			t.Fatal(err)
		}
		_ = c.Close()
	}
	calls := f.got()
	if len(calls) != len(pairs) {
		t.Fatalf("%d Dial calls, want %d", len(calls), len(pairs))
	}
	for i, c := range calls {
		if c.iso != pairs[i] {
			t.Errorf("call %d isolation %+v, want %+v", i, c.iso, pairs[i])
		}
	}
	if calls[0].iso != calls[2].iso || calls[0].iso == calls[1].iso || calls[0].iso == calls[3].iso {
		t.Fatalf("isolation keys do not separate pairs: %+v", calls)
	}
}

// TestSOCKSResolveTorLookupIP uses btcd's connmgr.TorLookupIP, which lnd
// uses for DNS over Tor: greeting 05 01 00, RESOLVE 0xF0 with ATYP 3, and
// an IPv4 (ATYP 1) answer required.
func TestSOCKSResolveTorLookupIP(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	f.setAddr("soa.nodes.lightning.directory", netip.MustParseAddr("203.0.113.53"))
	f.setErr("nx.example", fmt.Errorf("wrapped: %w", circuit.ErrResolveFailed))
	f.setErr("private.example", fmt.Errorf("wrapped: %w", circuit.ErrExitPolicy))
	addr := startSOCKS(t, f, nil)

	ips, err := connmgr.TorLookupIP("soa.nodes.lightning.directory", addr)
	if err != nil {
		t.Fatalf("TorLookupIP: %v", err)
	}
	if len(ips) != 1 || !ips[0].Equal(net.ParseIP("203.0.113.53")) {
		t.Fatalf("TorLookupIP = %v, want [203.0.113.53]", ips)
	}
	if _, err := connmgr.TorLookupIP("nx.example", addr); err == nil || err.Error() != "tor host is unreachable" {
		t.Fatalf("NX lookup error %v, want ErrTorHostUnreachable (0x04)", err)
	}
	if _, err := connmgr.TorLookupIP("private.example", addr); err == nil || err.Error() != "tor not allowed" {
		t.Fatalf("policy lookup error %v, want ErrTorNotAllowed (0x02)", err)
	}
}

// TestSOCKSResolveRaw covers RESOLVE replies byte for byte: IPv6 answers
// use ATYP 4, IP literals answer themselves without Resolve, credentials
// reach Resolve as Isolation, and malformed requests are refused.
func TestSOCKSResolveRaw(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	f.setAddr("v4.example", netip.MustParseAddr("198.51.100.9"))
	f.setAddr("v6.example", netip.MustParseAddr("2001:db8::9"))
	f.setAddr("mapped.example", netip.MustParseAddr("::ffff:198.51.100.10"))
	f.setErr(testOnion(8), fmt.Errorf("resolve: %w", ErrOnionNotFound))
	addr := startSOCKS(t, f, nil)
	cases := []struct {
		name string
		req  []byte
		want []byte
	}{
		{"v4", socksDomain(0xF0, "v4.example", 0), []byte{5, 0, 0, 1, 198, 51, 100, 9, 0, 0}},
		{"v6", socksDomain(0xF0, "v6.example", 0), []byte{5, 0, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0}},
		{"mapped answer unmapped", socksDomain(0xF0, "mapped.example", 0), []byte{5, 0, 0, 1, 198, 51, 100, 10, 0, 0}},
		{"no answer", socksDomain(0xF0, "none.example", 0), []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"onion answered locally", socksDomain(0xF0, testOnion(8), 0), []byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"literal in domain", socksDomain(0xF0, "192.0.2.1", 0), []byte{5, 0, 0, 1, 192, 0, 2, 1, 0, 0}},
		{"atyp 1 literal", []byte{5, 0xF0, 0, 1, 192, 0, 2, 2, 0, 0}, []byte{5, 0, 0, 1, 192, 0, 2, 2, 0, 0}},
		{"bad host", socksDomain(0xF0, "a b", 0), []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"bad atyp", []byte{5, 0xF0, 0, 9}, []byte{5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"bad rsv", []byte{5, 0xF0, 1, 3, 1, 'a', 0, 0}, []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"empty domain", []byte{5, 0xF0, 0, 3, 0, 0, 0}, []byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.send(5, 1, 2)
			c.expect(5, 2)
			c.send(1, 1, 'u', 1, 'p')
			c.expect(1, 0)
			c.send(tc.req...)
			c.expect(tc.want...)
			c.expectClosed(0)
		})
	}
	for _, call := range f.got() {
		if call.iso != (Isolation{"u", "p"}) {
			t.Fatalf("Resolve got isolation %+v, want {u p}", call.iso)
		}
		if call.target == "192.0.2.1" || call.target == "192.0.2.2" {
			t.Fatalf("IP literal %q went to Resolve", call.target)
		}
	}
}

func TestSOCKSResolveDisabled(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, func(c *Config) { c.Resolve = nil })
	c := dialRaw(t, addr)
	c.send(5, 1, 0)
	c.expect(5, 0)
	c.send(socksDomain(0xF0, "v4.example", 0)...)
	c.expect(5, 7, 0, 1, 0, 0, 0, 0, 0, 0)
}

// TestSOCKSReplyCodes asserts the reply byte for each stream error
// (docs/PROXY.md) and for refused commands and address types.
func TestSOCKSReplyCodes(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	wrap := func(s error, cause error) error { return fmt.Errorf("stream: %w: %w", s, cause) }
	f.setErr("policy.example", wrap(circuit.ErrExitPolicy, errors.New("rule 3")))
	f.setErr("unreach.example", wrap(circuit.ErrUnreachable, os.NewSyscallError("connect", syscall.EHOSTUNREACH)))
	f.setErr("netunreach.example", wrap(circuit.ErrUnreachable, os.NewSyscallError("connect", syscall.ENETUNREACH)))
	f.setErr("refused.example", wrap(circuit.ErrConnRefused, os.NewSyscallError("connect", syscall.ECONNREFUSED)))
	f.setErr("timeout.example", wrap(circuit.ErrTimeout, errors.New("END 5")))
	f.setErr("nx.example", wrap(circuit.ErrResolveFailed, errors.New("NXDOMAIN")))
	f.setErr("pay.example", wrap(circuit.ErrPayment, errors.New("no vouchers")))
	f.setErr("closed.example", wrap(circuit.ErrClosed, errors.New("DESTROY")))
	f.setErr("misc.example", errors.New("something else"))
	f.setErr("slow.example", errBlock)
	addr := startSOCKS(t, f, func(c *Config) { c.ConnectTimeout = 100 * time.Millisecond })
	cases := []struct {
		name string
		req  []byte
		rep  byte
	}{
		{"policy", socksDomain(1, "policy.example", 80), 0x02},
		{"host unreachable", socksDomain(1, "unreach.example", 80), 0x04},
		// END carries one "unreachable" reason (6): the errno stays at the
		// exit, so network unreachable is answered as host unreachable.
		{"network unreachable", socksDomain(1, "netunreach.example", 80), 0x04},
		{"refused", socksDomain(1, "refused.example", 80), 0x05},
		{"timeout", socksDomain(1, "timeout.example", 80), 0x06},
		{"connect timeout", socksDomain(1, "slow.example", 80), 0x06},
		{"resolve failed", socksDomain(1, "nx.example", 80), 0x04},
		{"payment", socksDomain(1, "pay.example", 80), 0x01},
		{"closed", socksDomain(1, "closed.example", 80), 0x01},
		{"misc", socksDomain(1, "misc.example", 80), 0x01},
		{"bad host char", socksDomain(1, "exa mple.com", 80), 0x01},
		{"bad host bracket", socksDomain(1, "[::1]", 80), 0x01},
		{"bad v6 zone", socksDomain(1, "fe80::1%eth0", 80), 0x01},
		{"empty label", socksDomain(1, "a..example", 80), 0x01},
		{"long label", socksDomain(1, strings.Repeat("a", 64)+".example", 80), 0x01},
		{"numeric name", socksDomain(1, "2130706433", 80), 0x01},
		{"bad ipv4 text", socksDomain(1, "1.2.3.256", 80), 0x01},
		{"port zero", socksDomain(1, "ok.example", 0), 0x01},
		{"bind", socksDomain(2, "ok.example", 80), 0x07},
		{"associate", socksDomain(3, "ok.example", 80), 0x07},
		{"resolve ptr", []byte{5, 0xF1, 0, 1, 1, 2, 3, 4, 0, 0}, 0x07},
		{"unknown command", socksDomain(9, "ok.example", 80), 0x07},
		{"unknown atyp", []byte{5, 1, 0, 7, 1, 2, 3, 4, 0, 80}, 0x08},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.send(5, 1, 0)
			c.expect(5, 0)
			c.send(tc.req...)
			c.expect(5, tc.rep, 0, 1, 0, 0, 0, 0, 0, 0)
			c.expectClosed(0)
		})
	}
}

// TestSOCKSGarbage: malformed greetings and requests get an error reply or
// a close, never a crash, and the server keeps serving.
func TestSOCKSGarbage(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	cases := []struct {
		name  string
		send  []byte
		reply []byte // what the server may send before closing
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), nil},
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil},
		{"no methods", []byte{5, 0}, []byte{5, 0xFF}},
		{"gssapi only", []byte{5, 1, 1}, []byte{5, 0xFF}},
		{"truncated greeting", []byte{5}, nil},
		{"truncated methods", []byte{5, 3, 0}, nil},
		{"bad auth version", []byte{5, 1, 2, 9, 1, 'u', 1, 'p'}, []byte{5, 2}},
		{"truncated auth", []byte{5, 1, 2, 1, 200, 'u'}, []byte{5, 2}},
		{"bad request version", []byte{5, 1, 0, 4, 1, 0, 1, 1, 2, 3, 4, 0, 80}, []byte{5, 0}},
		{"truncated request", []byte{5, 1, 0, 5, 1, 0, 3, 200, 'a'}, []byte{5, 0}},
		{"silence", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			if tc.send != nil {
				c.send(tc.send...)
			}
			got := c.expectClosed(len(tc.reply))
			if string(got) != string(tc.reply[:len(got)]) {
				t.Fatalf("server sent % x, want a prefix of % x", got, tc.reply)
			}
		})
	}
	// Still serving.
	c := dialRaw(t, addr)
	c.send(5, 1, 0)
	c.expect(5, 0)
	c.send(socksDomain(1, "after.example", 80)...)
	c.expect(5, 0, 0, 1, 0, 0, 0, 0, 0, 0)
}

// TestSOCKSPipelined: a client that sends greeting, request and payload in
// one write (no round trips) still works; bytes after the request are kept.
func TestSOCKSPipelined(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, nil)
	c := dialRaw(t, addr)
	msg := append([]byte{5, 1, 0}, socksDomain(1, "fast.example", 443)...)
	msg = append(msg, "early data"...)
	c.send(msg...)
	c.expect(5, 0)
	c.expect(5, 0, 0, 1, 0, 0, 0, 0, 0, 0)
	c.expect([]byte("early data")...)
}

// TestSOCKSTargetCanonical: every address form reaches Dial as the
// canonical cell.Target, and targets the grammar refuses never reach it.
func TestSOCKSTargetCanonical(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, nil)
	mapped := []byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 80}
	cases := []struct {
		name string
		req  []byte
		want string // "" = refused with 0x01 before Dial
	}{
		{"upper case, trailing dot", socksDomain(1, "WWW.Example.ORG.", 443), "www.example.org:443"},
		{"ipv6 text not RFC 5952", socksDomain(1, "2001:DB8:0:0:0:0:0:1", 8333), "[2001:db8::1]:8333"},
		{"mapped ipv6 text", socksDomain(1, "::ffff:1.2.3.4", 8333), "1.2.3.4:8333"},
		{"atyp 4 mapped", mapped, "1.2.3.4:80"},
		{"atyp 1", []byte{5, 1, 0, 1, 192, 0, 2, 7, 0x20, 0x8d}, "192.0.2.7:8333"},
		{"underscore", socksDomain(1, "_x.example", 1), "_x.example:1"},
		{"longest name, short port", socksDomain(1, longName(253), 1), longName(253) + ":1"},
		{"longest name, long port", socksDomain(1, longName(253), 8333), ""},
		{"trailing dots", socksDomain(1, "example..", 80), ""},
		{"hex name", socksDomain(1, "0x7f.1", 80), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			c.send(5, 1, 0)
			c.expect(5, 0)
			c.send(tc.req...)
			if tc.want == "" {
				c.expect(5, 1, 0, 1, 0, 0, 0, 0, 0, 0)
				c.expectClosed(0)
				return
			}
			c.expect(5, 0, 0, 1, 0, 0, 0, 0, 0, 0)
			for _, call := range f.got() {
				if call.target == tc.want {
					return
				}
			}
			t.Fatalf("Dial never saw %q; calls %+v", tc.want, f.got())
		})
	}
}

// longName returns a name of n bytes made of 63-byte labels.
func longName(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat("a", min(63, n-b.Len())))
	}
	return b.String()
}
