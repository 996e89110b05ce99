package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// FuzzSOCKSServe feeds arbitrary client bytes to a SOCKS connection
// handler over an in-memory pipe. The handler must return (the handshake
// deadline bounds it), never panic, and hand Dial and Resolve only vetted
// targets.
func FuzzSOCKSServe(f *testing.F) {
	user := []byte{1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's'}
	f.Add(append([]byte{5, 1, 0}, socksDomain(1, "1.2.3.4", 8333)...))
	f.Add(append(append([]byte{5, 2, 0, 2}, user...), socksDomain(1, "x.onion", 8333)...))
	f.Add(append([]byte{5, 1, 0}, socksDomain(0xF0, "soa.nodes.lightning.directory", 0)...))
	f.Add(append([]byte{5, 1, 0}, 5, 1, 0, 4, 0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x20, 0x8d))
	f.Add(append([]byte{5, 1, 0}, 5, 0xF0, 0, 1, 1, 2, 3, 4, 0, 0))
	f.Add([]byte{5, 0})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var mu sync.Mutex
		var seen []string
		vetTarget := func(target cell.Target) {
			mu.Lock()
			seen = append(seen, target.String())
			mu.Unlock()
			if again, err := cell.ParseTarget(target.String()); err != nil || again != target {
				t.Errorf("Dial got a target that is not canonical: %q", target.String())
			}
		}
		vetHost := func(host string) {
			mu.Lock()
			seen = append(seen, host)
			mu.Unlock()
			if c, err := cell.CheckHost(host); err != nil || c != host {
				t.Errorf("Resolve got unvetted host %q", host)
			}
			if _, err := netip.ParseAddr(host); err == nil {
				t.Errorf("Resolve got the IP literal %q", host)
			}
		}
		s, err := NewSOCKS(Config{
			Dial: func(_ context.Context, _ Isolation, target cell.Target) (net.Conn, error) {
				vetTarget(target)
				return nil, circuit.ErrExitPolicy
			},
			Resolve: func(_ context.Context, _ Isolation, host string) (netip.Addr, error) {
				vetHost(host)
				return netip.MustParseAddr("192.0.2.1"), nil
			},
			HandshakeTimeout: time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveConn(t.Context(), server)
			_ = server.Close()
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			_, _ = io.Copy(io.Discard, client)
		}()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := client.Write(in); err != nil && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, net.ErrClosed) {
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Logf("write: %v", err)
			}
		}
		_ = client.Close()
		<-done
		<-drained
	})
}

// FuzzParseAuthority: whatever the HTTP front end accepts as a CONNECT
// target is a canonical cell.Target that the front end accepts again
// unchanged; what it refuses is ErrBadTarget with the grammar's reason.
func FuzzParseAuthority(f *testing.F) {
	for _, s := range []string{"example.com:443", "Example.COM.:443", "[2001:db8::1]:8333", "[::ffff:1.2.3.4]:80", "1.2.3.4:80", "x.onion:9735", "a:0", "::1:80", "[1.2.3.4]:80", "exa mple:1", "x:080", "2130706433:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseAuthority(s)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) || !errors.Is(err, cell.ErrBadTarget) || !got.IsZero() {
				t.Fatalf("parseAuthority(%q) = %+v, %v; want ErrBadTarget and cell.ErrBadTarget", s, got, err)
			}
			return
		}
		again, err := parseAuthority(got.String())
		if err != nil || again != got || again.String() != got.String() {
			t.Fatalf("%q -> %q -> %+v, %v", s, got.String(), again, err)
		}
	})
}
