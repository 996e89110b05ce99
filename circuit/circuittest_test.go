package circuit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
)

// testNet is a set of libp2p hosts on 127.0.0.1, each with a relay engine.
type testNet struct {
	t       testing.TB
	hosts   []host.Host
	engines []*Engine
	keys    []*OnionKey
}

// newTestNet starts n hosts and engines; tweak may adjust each Config
// before New. Everything is closed in t.Cleanup.
func newTestNet(t testing.TB, n int, tweak func(i int, cfg *Config)) *testNet {
	t.Helper()
	tn := &testNet{t: t}
	for i := range n {
		h, err := libp2p.New(
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.DisableRelay(),
			libp2p.DisableMetrics(),
		)
		if err != nil {
			t.Fatal(err)
		}
		key, err := GenerateOnionKey()
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{Host: h, OnionKey: key, Begin: loopbackBegin, Resolve: loopbackResolve}
		if tweak != nil {
			tweak(i, &cfg)
		}
		e, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		tn.hosts = append(tn.hosts, h)
		tn.engines = append(tn.engines, e)
		tn.keys = append(tn.keys, key)
	}
	t.Cleanup(tn.close)
	return tn
}

func (tn *testNet) close() {
	for i, e := range tn.engines {
		_ = e.Close()
		_ = tn.hosts[i].Close()
	}
}

// path returns HopInfos for the given host indexes.
func (tn *testNet) path(idx ...int) []HopInfo {
	p := make([]HopInfo, len(idx))
	for i, j := range idx {
		h := tn.hosts[j]
		p[i] = HopInfo{Peer: h.ID(), Addrs: h.Addrs(), OnionKey: tn.keys[j].Public()}
	}
	return p
}

// build makes a circuit from engine 0 through the hosts idx.
func (tn *testNet) build(ctx context.Context, idx ...int) *Circuit {
	tn.t.Helper()
	c, err := tn.engines[0].Build(ctx, tn.path(idx...))
	if err != nil {
		tn.t.Fatalf("build: %v", err)
	}
	tn.t.Cleanup(func() { _ = c.Close() })
	return c
}

// loopbackBegin dials target over TCP, but only to a loopback address.
func loopbackBegin(ctx context.Context, req BeginRequest) (net.Conn, error) {
	if req.Service != cell.ServiceExit {
		return nil, ErrServiceNotOffered
	}
	a, ok := req.Target.Addr()
	if !ok || !a.IsLoopback() {
		return nil, ErrExitPolicy
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", netip.AddrPortFrom(a, req.Target.Port()).String())
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("%w: %w", ErrConnRefused, err)
	}
	return c, err
}

func loopbackResolve(_ context.Context, host string) (netip.Addr, error) {
	if host == "localhost" {
		return netip.MustParseAddr("127.0.0.1"), nil
	}
	return netip.Addr{}, ErrResolveFailed
}

// tcpServer is a loopback TCP server running handle on each connection.
type tcpServer struct {
	ln net.Listener
	wg sync.WaitGroup
}

func newTCPServer(t testing.TB, handle func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln}
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					_ = c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// mustTarget parses a target the test knows is valid.
func mustTarget(tb testing.TB, s string) cell.Target {
	tb.Helper()
	t, err := cell.ParseTarget(s)
	if err != nil {
		tb.Fatalf("target %q: %v", s, err)
	}
	return t
}

// addr is the server's address as a stream target.
func (s *tcpServer) addr() cell.Target {
	t, err := cell.ParseTarget(s.ln.Addr().String())
	if err != nil {
		panic("test server address: " + err.Error())
	}
	return t
}

func echo(c net.Conn) { _, _ = io.Copy(c, c) }

// testCtx returns a context that ends before the test's deadline.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
