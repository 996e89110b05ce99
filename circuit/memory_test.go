package circuit

import (
	"bufio"
	"io"
	"runtime"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// rawLink is a test client that speaks cells on a link stream directly,
// so that measuring the relays' memory is not clouded by client state.
type rawLink struct {
	s network.Stream
	r *bufio.Reader
	w *bufio.Writer
}

func (rl *rawLink) write(tb testing.TB, c *cell.Cell) {
	if _, err := rl.w.Write(c[:]); err != nil {
		tb.Fatal(err)
	}
}

func (rl *rawLink) read(tb testing.TB, c *cell.Cell) {
	if err := rl.w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.ReadFull(rl.r, c[:]); err != nil {
		tb.Fatal(err)
	}
}

// openIdleCircuits builds n circuits from tn.hosts[0] through hosts 1 (and
// 2 if extend) with raw cells and forgets the client side. It returns the
// link so the circuits stay up.
func openIdleCircuits(t *testing.T, tn *testNet, n int, extend bool) *rawLink {
	ctx := testCtx(t)
	h1 := tn.hosts[1]
	if err := tn.hosts[0].Connect(ctx, peer.AddrInfo{ID: h1.ID(), Addrs: h1.Addrs()}); err != nil {
		t.Fatal(err)
	}
	s, err := tn.hosts[0].NewStream(ctx, tn.hosts[1].ID(), LinkProtocol)
	if err != nil {
		t.Fatal(err)
	}
	rl := &rawLink{s: s, r: bufio.NewReaderSize(s, linkBufSize), w: bufio.NewWriterSize(s, linkBufSize)}
	hss := make([]*clientHandshake, n+1)
	var c cell.Cell
	for id := 1; id <= n; id++ {
		hs, msg1, err := startHandshake(tn.keys[1].Public(), nil)
		if err != nil {
			t.Fatal(err)
		}
		hss[id] = hs
		c.Reset()
		c.SetCircID(cell.CircID(id))
		c.SetCommand(cell.CmdCreate)
		if err := (&cell.Create{Depth: 1, Handshake: msg1}).MarshalBody(c.Body()); err != nil {
			t.Fatal(err)
		}
		rl.write(t, &c)
	}
	keys := make([]hopKeys, n+1)
	for range n {
		rl.read(t, &c)
		var cd cell.Created
		if c.Command() != cell.CmdCreated || cd.UnmarshalBody(c.Body()) != nil {
			t.Fatalf("got %v, want CREATED", c.Command())
		}
		id := int(c.CircID())
		k, _, err := hss[id].finish(cd.Handshake)
		if err != nil {
			t.Fatal(err)
		}
		keys[id], hss[id] = k, nil
	}
	if !extend {
		return rl
	}
	next := tn.path(2)[0]
	for id := 1; id <= n; id++ {
		_, msg1, err := startHandshake(next.OnionKey, nil)
		if err != nil {
			t.Fatal(err)
		}
		ext := cell.Extend{Peer: []byte(next.Peer), OnionKey: next.OnionKey, Handshake: msg1}
		for _, a := range next.Addrs {
			ext.Addrs = append(ext.Addrs, a.Bytes())
		}
		data, err := ext.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Reset()
		c.SetCircID(cell.CircID(id))
		c.SetCommand(cell.CmdRelay)
		body := c.Body()
		L := cell.OnionLen(1)
		if err := cell.EncodeRelay(body[hdrLen:L-cell.TagLen], cell.RelayExtend, 0, data); err != nil {
			t.Fatal(err)
		}
		copy(body, keys[id].cookie[:])
		body[cell.CookieLen] = kindHere
		fwd, _ := newLayer(keys[id].fwd)
		if err := fwd.seal(body[:L]); err != nil {
			t.Fatal(err)
		}
		rl.write(t, &c)
	}
	for range n {
		rl.read(t, &c)
		if c.Command() != cell.CmdRelay {
			t.Fatalf("got %v (reason %v), want RELAY(EXTENDED)", c.Command(), parseDestroy(&c))
		}
	}
	return rl
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestIdleCircuitMemory opens 10,000 circuits through one relay and
// reports what each costs the relays (target ≤ 16 KiB, including the
// 10,000-circuit share of link buffers and table entries).
func TestIdleCircuitMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 handshakes")
	}
	if raceEnabled {
		t.Skip("the race detector inflates memory and takes minutes here")
	}
	const n = 10000
	for _, tc := range []struct {
		name   string
		extend bool
		hops   int // relayed circuit-hops per circuit
	}{
		{"first hop", false, 1},
		{"middle and last hop", true, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tn := newTestNet(t, 3, func(i int, cfg *Config) {
				cfg.Limits.MaxCircuits = 2 * n
				cfg.Limits.MaxCircuitsPerPeer = 2 * n
				cfg.Limits.MaxPendingCreates = 2 * n
				// One neighbour opens every circuit at once: lift the
				// CREATE rate limits, or the relay refuses all but a
				// burst's worth and the test measures refusals.
				cfg.Limits.CreatesPerPeerPerSecond = float64(4 * n)
				cfg.Limits.CreateBurstPerPeer = 4 * n
				cfg.Limits.CreatesPerSecond = float64(4 * n)
				cfg.Limits.CreateBurst = 4 * n
				// The raw client writes every CREATE before it reads; under
				// -race that takes longer than the default write timeout.
				cfg.Limits.WriteTimeout = 10 * time.Minute
				cfg.Limits.ExtendTimeout = 5 * time.Minute
				cfg.Limits.CreateTimeout = 5 * time.Minute
			})
			// Warm up the hosts' connections so that only circuits count.
			warm := openIdleCircuits(t, tn, 1, true)
			defer warm.s.Reset()
			g0 := runtime.NumGoroutine()
			before := heapInUse()
			rl := openIdleCircuits(t, tn, n, tc.extend)
			after := heapInUse()
			g1 := runtime.NumGoroutine()
			// The warm-up link was replaced by rl's, taking its circuit.
			if got := tn.engines[1].Stats().RelayCircuits; got != n {
				t.Fatalf("relay holds %d circuits, want %d", got, n)
			}
			per := float64(after-before) / float64(n*tc.hops)
			t.Logf("%d circuits: %.0f bytes per relayed circuit-hop; goroutines %d → %d", n, per, g0, g1)
			if per > 16<<10 {
				t.Errorf("idle circuit costs %.0f bytes, want ≤ 16 KiB", per)
			}
			if g1-g0 > 20 {
				t.Errorf("goroutines grew by %d for %d idle circuits", g1-g0, n)
			}
			runtime.KeepAlive(rl)
			_ = rl.s.Reset()
			ctx := testCtx(t)
			waitFor(ctx, t, "circuits to go", func() bool {
				return tn.engines[1].Stats().RelayCircuits <= 1 && tn.engines[2].Stats().RelayCircuits <= 1
			})
		})
	}
}
