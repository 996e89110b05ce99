package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/connmgr"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/exit"
	"github.com/co-infuse/co-infuse/proxy"
)

// TestWithExitDialer wires the real exit.Dialer straight into the SOCKS
// front end (what a one-hop circuit would carry) and checks the end-to-end
// reply codes against loopback targets only.
func TestWithExitDialer(t *testing.T) {
	t.Parallel()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "through the exit")
	}))
	t.Cleanup(web.Close)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	_ = closed.Close()

	names := func(_ context.Context, host string) ([]netip.Addr, error) {
		switch host {
		case "web.test":
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		case "rebind.test":
			return []netip.Addr{netip.MustParseAddr("10.1.2.3")}, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	mk := func(allowLoopback bool) string {
		var open []netip.Prefix
		if allowLoopback {
			open = exit.LoopbackRanges()
		}
		pol, err := exit.NewPolicy(nil, open)
		if err != nil {
			t.Fatal(err)
		}
		d, err := exit.New(pol, exit.WithResolver(names), exit.WithDialTimeout(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		s, err := proxy.NewSOCKS(proxy.Config{
			Dial: func(ctx context.Context, _ proxy.Isolation, target cell.Target) (net.Conn, error) {
				return d.Dial(ctx, target)
			},
			Resolve: func(ctx context.Context, _ proxy.Isolation, host string) (netip.Addr, error) {
				return d.Resolve(ctx, host)
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- s.Serve(l) }()
		t.Cleanup(func() { _ = s.Close(); <-served })
		return l.Addr().String()
	}
	devnet, strict := mk(true), mk(false)
	_, webPort, _ := net.SplitHostPort(strings.TrimPrefix(web.URL, "http://"))
	_, closedPort, _ := net.SplitHostPort(closedAddr)
	port := func(s string) uint16 { p, _ := strconv.Atoi(s); return uint16(p) }

	cases := []struct {
		name, proxy, host string
		port              uint16
		rep               byte
	}{
		{"loopback allowed", devnet, "127.0.0.1", port(webPort), 0x00},
		{"name resolved at exit", devnet, "web.test", port(webPort), 0x00},
		{"loopback refused by default", strict, "127.0.0.1", port(webPort), 0x02},
		{"rebinding refused", devnet, "rebind.test", 443, 0x02},
		{"closed port", devnet, "127.0.0.1", port(closedPort), 0x05},
		{"nxdomain", devnet, "nx.test", 443, 0x04},
		{"smtp", strict, "1.1.1.1", 25, 0x02},
		{"onion never resolved at the exit", devnet, "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", 443, 0xF0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", tc.proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			req := []byte{5, 1, 0, 5, 1, 0, 3, byte(len(tc.host))}
			req = append(append(req, tc.host...), byte(tc.port>>8), byte(tc.port))
			if _, err := c.Write(req); err != nil {
				t.Fatal(err)
			}
			rep := make([]byte, 12)
			if _, err := io.ReadFull(c, rep); err != nil {
				t.Fatalf("read reply: %v", err)
			}
			if rep[3] != tc.rep {
				t.Fatalf("reply % x, want code 0x%02x", rep, tc.rep)
			}
			if tc.rep != 0 {
				return
			}
			if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(c)
			if !strings.HasSuffix(string(body), "through the exit") {
				t.Fatalf("response %q", body)
			}
		})
	}

	ips, err := connmgr.TorLookupIP("web.test", devnet)
	if err != nil || len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("TorLookupIP(web.test) via devnet exit = %v, %v", ips, err)
	}
	if _, err := connmgr.TorLookupIP("rebind.test", devnet); err == nil || err.Error() != "tor not allowed" {
		t.Fatalf("TorLookupIP(rebind.test) = %v, want tor not allowed", err)
	}
}
