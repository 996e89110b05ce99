package pool

import (
	"context"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// testNet is n libp2p hosts on 127.0.0.1, each with a circuit engine:
// engine 0 is the client, the others relay, and every last hop connects
// every stream to one loopback echo server, whatever its target.
type testNet struct {
	t       testing.TB
	hosts   []host.Host
	engines []*circuit.Engine
	keys    []*circuit.OnionKey
}

func newTestNet(t testing.TB, n int) *testNet {
	t.Helper()
	echo := newEchoServer(t)
	begin := func(ctx context.Context, _ circuit.BeginRequest) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", echo)
	}
	tn := &testNet{t: t}
	t.Cleanup(tn.close)
	for range n {
		h, err := libp2p.New(
			libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
			libp2p.DisableRelay(),
			libp2p.DisableMetrics(),
		)
		if err != nil {
			t.Fatal(err)
		}
		key, err := circuit.GenerateOnionKey()
		if err != nil {
			t.Fatal(err)
		}
		e, err := circuit.New(circuit.Config{Host: h, OnionKey: key, Begin: begin})
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
	return tn
}

func (tn *testNet) close() {
	for i, e := range tn.engines {
		_ = e.Close()
		_ = tn.hosts[i].Close()
	}
}

func (tn *testNet) id(i int) peer.ID { return tn.hosts[i].ID() }

// path returns a Path through hosts idx whose exit accepts ports.
func (tn *testNet) path(ports []uint16, idx ...int) Path {
	p := Path{Accepts: func(port uint16) bool { return slices.Contains(ports, port) }}
	for _, j := range idx {
		h := tn.hosts[j]
		p.Hops = append(p.Hops, circuit.HopInfo{Peer: h.ID(), Addrs: h.Addrs(), OnionKey: tn.keys[j].Public()})
	}
	return p
}

// selectFunc is Config.Select's type.
type selectFunc = func(ctx context.Context, port uint16, exclude []peer.ID) (Path, error)

// config returns a pool Config building on engine 0 with sel, on clk, with
// pre-building off; tweak it before New.
func (tn *testNet) config(clk *clock, sel selectFunc) Config {
	return Config{
		Select:     sel,
		Build:      tn.engines[0].Build,
		Preemptive: -1,
		Now:        clk.Now,
	}
}

// newPool returns a pool for cfg, closed in t.Cleanup (before the net).
func newPool(t testing.TB, cfg Config) *Pool {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// openStream opens a stream on c to the echo server and checks one round
// trip. It is the only place the tests call (*circuit.Circuit).Dial.
func openStream(ctx context.Context, t testing.TB, c *circuit.Circuit) net.Conn {
	t.Helper()
	target, err := cell.ParseTarget("127.0.0.1:443")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Dial(ctx, cell.ServiceExit, target)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	echoOnce(t, s)
	return s
}

// echoOnce writes to s and reads the echo back.
func echoOnce(t testing.TB, s net.Conn) {
	t.Helper()
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v", got, err)
	}
}

// newEchoServer runs a loopback TCP echo server until the test ends.
func newEchoServer(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
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
		wg.Wait()
	})
	return ln.Addr().String()
}

// clock is a settable clock for Config.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

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

// reports records Config.Report calls.
type reports struct {
	mu       sync.Mutex
	ok, fail map[peer.ID]int
}

func newReports() *reports {
	return &reports{ok: map[peer.ID]int{}, fail: map[peer.ID]int{}}
}

func (r *reports) report(p peer.ID, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.ok[p]++
	} else {
		r.fail[p]++
	}
}

func (r *reports) counts() (ok, fail map[peer.ID]int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.ok), maps.Clone(r.fail)
}
