package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
)

// readResponse reads one HTTP response head and body from c.
func readResponse(t *testing.T, c *rawConn) (*http.Response, string) {
	t.Helper()
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, string(body)
}

func TestHTTPConnectStatuses(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	wrap := func(s error) error { return fmt.Errorf("stream: %w: cause", s) }
	f.setErr("policy.example", wrap(circuit.ErrExitPolicy))
	f.setErr("refused.example", wrap(circuit.ErrConnRefused))
	f.setErr("unreach.example", wrap(circuit.ErrUnreachable))
	f.setErr("nx.example", wrap(circuit.ErrResolveFailed))
	f.setErr("timeout.example", wrap(circuit.ErrTimeout))
	f.setErr("busy.example", wrap(circuit.ErrResourceLimit))
	f.setErr("misc.example", errors.New("other"))
	f.setErr("slow.example", errBlock)
	f.setErr(testOnion(7), fmt.Errorf("dial: %w", ErrOnionNotFound))
	f.setErr(testOnion(8), &ReplyError{Code: 0xF0, Err: errors.New("tor: descriptor not found")})
	f.setErr(testOnion(9), &ReplyError{Code: 0xF3, Err: errors.New("tor: rendezvous failed")})
	addr := startHTTP(t, f, func(c *Config) { c.ConnectTimeout = 100 * time.Millisecond })
	cases := []struct {
		name, req string
		code      int
		body      string
	}{
		{"get", "GET http://x.example/ HTTP/1.1\r\nHost: x.example\r\n\r\n", 405, "only CONNECT"},
		{"post", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405, "only CONNECT"},
		{"policy", "CONNECT policy.example:443 HTTP/1.1\r\n\r\n", 403, "exit policy"},
		{"refused", "CONNECT refused.example:443 HTTP/1.1\r\n\r\n", 502, "refused"},
		{"unreachable", "CONNECT unreach.example:443 HTTP/1.1\r\n\r\n", 502, "unreachable"},
		{"resolve", "CONNECT nx.example:443 HTTP/1.1\r\n\r\n", 502, "resolve"},
		{"timeout", "CONNECT timeout.example:443 HTTP/1.1\r\n\r\n", 504, "timed out"},
		{"connect timeout", "CONNECT slow.example:443 HTTP/1.1\r\n\r\n", 504, "timed out"},
		{"resource", "CONNECT busy.example:443 HTTP/1.1\r\n\r\n", 503, "capacity"},
		{"onion answered locally", "CONNECT " + testOnion(7) + ":9735 HTTP/1.1\r\n\r\n", 404, "onion service not found"},
		{"onion not found by a gateway's tor", "CONNECT " + testOnion(8) + ":9735 HTTP/1.1\r\n\r\n", 404, "onion service not found"},
		{"onion rendezvous failed at a gateway's tor", "CONNECT " + testOnion(9) + ":9735 HTTP/1.1\r\n\r\n", 502, "stream"},
		{"misc", "CONNECT misc.example:443 HTTP/1.1\r\n\r\n", 502, "stream"},
		{"no port", "CONNECT x.example HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"port zero", "CONNECT x.example:0 HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"path form", "CONNECT /x HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"unbracketed v6", "CONNECT ::1:443 HTTP/1.1\r\n\r\n", 400, "malformed"},
		{"leading zero port", "CONNECT x.example:080 HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"empty label", "CONNECT x..example:443 HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"numeric name", "CONNECT 2130706433:443 HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"bracketed ipv4", "CONNECT [1.2.3.4]:443 HTTP/1.1\r\n\r\n", 400, "malformed"}, // net/http refuses it first
		{"bad auth scheme", "CONNECT x.example:443 HTTP/1.1\r\nProxy-Authorization: Bearer abc\r\n\r\n", 400, "Basic"},
		{"bad auth base64", "CONNECT x.example:443 HTTP/1.1\r\nProxy-Authorization: Basic !!!\r\n\r\n", 400, "Basic"},
		{"garbage", "\x05\x01\x00\r\n\r\n", 400, "malformed"},
		{"huge head", "CONNECT x.example:443 HTTP/1.1\r\nX: " + strings.Repeat("a", maxHTTPHead) + "\r\n\r\n", 431, "too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialRaw(t, addr)
			if _, err := io.WriteString(c, tc.req); err != nil {
				t.Fatal(err)
			}
			resp, body := readResponse(t, c)
			if resp.StatusCode != tc.code || !strings.Contains(body, tc.body) {
				t.Fatalf("got %d %q, want %d containing %q", resp.StatusCode, body, tc.code, tc.body)
			}
			if strings.Count(strings.TrimSuffix(body, "\n"), "\n") != 0 {
				t.Fatalf("reason is not one line: %q", body)
			}
			if tc.code == 405 && resp.Header.Get("Allow") != "CONNECT" {
				t.Fatalf("405 without Allow: CONNECT")
			}
		})
	}
}

func TestHTTPConnectTunnel(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startHTTP(t, f, nil)
	c := dialRaw(t, addr)
	// Basic base64("u1:p1"), and payload sent right behind the head.
	if _, err := io.WriteString(c, "CONNECT [2001:db8::1]:8333 HTTP/1.1\r\nHost: [2001:db8::1]:8333\r\nProxy-Authorization: Basic dTE6cDE=\r\n\r\nearly"); err != nil {
		t.Fatal(err)
	}
	c.expect([]byte("HTTP/1.1 200 Connection established\r\n\r\nearly")...)
	if _, err := io.WriteString(c, "more"); err != nil {
		t.Fatal(err)
	}
	c.expect([]byte("more")...)
	calls := f.got()
	if len(calls) != 1 || calls[0].target != "[2001:db8::1]:8333" || calls[0].iso != (Isolation{"u1", "p1"}) {
		t.Fatalf("Dial calls %+v", calls)
	}
}

// TestHTTPConnectCanonicalTarget: the authority reaches Dial parsed, in
// canonical form.
func TestHTTPConnectCanonicalTarget(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startHTTP(t, f, nil)
	for _, tc := range []struct{ authority, want string }{
		{"Tunnel.EXAMPLE.:443", "tunnel.example:443"},
		{"[2001:DB8:0::1]:8333", "[2001:db8::1]:8333"},
		{"[::ffff:192.0.2.1]:80", "192.0.2.1:80"},
	} {
		c := dialRaw(t, addr)
		if _, err := io.WriteString(c, "CONNECT "+tc.authority+" HTTP/1.1\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		c.expect([]byte("HTTP/1.1 200 Connection established\r\n\r\n")...)
		_ = c.Close()
		found := false
		for _, call := range f.got() {
			found = found || call.target == tc.want
		}
		if !found {
			t.Fatalf("CONNECT %s: Dial never saw %q; calls %+v", tc.authority, tc.want, f.got())
		}
	}
}

// TestHTTPConnectHandshakeTimeout: a client that stalls in its request head
// is dropped after HandshakeTimeout without an answer.
func TestHTTPConnectHandshakeTimeout(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startHTTP(t, f, func(c *Config) { c.HandshakeTimeout = 200 * time.Millisecond })
	for _, partial := range []string{"", "CONNECT x.example:443 HTTP/1.1\r\nHost: x"} {
		c := dialRaw(t, addr)
		if partial != "" {
			if _, err := io.WriteString(c, partial); err != nil {
				t.Fatal(err)
			}
		}
		if got := c.expectClosed(0); len(got) != 0 {
			t.Fatalf("stalled client got %q", got)
		}
	}
	if len(f.got()) != 0 {
		t.Fatalf("Dial called for a stalled client: %+v", f.got())
	}
}

// TestServeIPv6Loopback: the front ends serve on [::1] as well.
func TestServeIPv6Loopback(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	f := newFakeNet(echoBackend(t))
	s, err := NewSOCKS(Config{Dial: f.dial})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() { _ = s.Close(); <-served })
	c := dialRaw(t, l.Addr().String())
	c.send(5, 1, 0)
	c.expect(5, 0)
	c.send(socksDomain(1, "v6.example", 80)...)
	c.expect(5, 0, 0, 1, 0, 0, 0, 0, 0, 0)
	c.send('x')
	c.expect('x')
}
