package circuit

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Benchmarks of how circuits share links (PROTOCOL.md §1.2). Both compare
// figures measured in the same run: scripts/bench.sh prints the ratios.

// countingSink is a loopback TCP server that counts, per connection, what
// it reads.
type countingSink struct {
	*tcpServer
	mu     sync.Mutex
	counts []*atomic.Int64 // guarded by mu; one per connection
}

func newCountingSink(tb testing.TB) *countingSink {
	s := &countingSink{}
	s.tcpServer = newTCPServer(tb, func(c net.Conn) {
		n := new(atomic.Int64)
		s.mu.Lock()
		s.counts = append(s.counts, n)
		s.mu.Unlock()
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			n.Add(int64(k))
			if err != nil {
				return
			}
		}
	})
	return s
}

// snapshot returns each connection's byte count.
func (s *countingSink) snapshot() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]int64, len(s.counts))
	for i, n := range s.counts {
		out[i] = n.Load()
	}
	return out
}

// pump writes to s until stop is closed or the stream fails, at most
// rate bytes a second (0: as fast as it can). It returns the stream's
// error, or nil once stop is closed.
func pump(s *Stream, stop <-chan struct{}, rate int) error {
	buf := make([]byte, benchChunk)
	var tick <-chan time.Time
	if rate > 0 {
		t := time.NewTicker(time.Second * benchChunk / time.Duration(rate))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if tick != nil {
			select {
			case <-stop:
				return nil
			case <-tick:
			}
		}
		if _, err := s.Write(buf); err != nil {
			select {
			case <-stop:
				return nil
			default:
				return err
			}
		}
	}
}

// BenchmarkManyCircuits runs 100 bulk circuits at once from one client
// through one relay and an exit to 100 sink connections, and reports the
// aggregate throughput and how evenly the circuits shared the links: the
// bytes the slowest circuit delivered over the mean, in the same window
// (target ≥ 0.5). It also reports memory per circuit: what the relay
// charges its budget (the circuit and its queued cells, Stats.Memory)
// while the circuits are idle and at its peak while they carry bulk data,
// and the whole process's heap (client, relay, exit and sink together)
// per active circuit over the heap before the circuits existed (what an
// idle circuit costs in heap is TestIdleCircuitMemory's: too little to
// see here).
func BenchmarkManyCircuits(b *testing.B) {
	const n = 100
	tn := newTestNet(b, 3, nil)
	snk := newCountingSink(b)
	ctx := testCtx(b)
	tn.build(ctx, 1, 2) // opens the links
	heap0 := heapInUse()
	streams := make([]*Stream, n)
	for i := range streams {
		c := tn.build(ctx, 1, 2)
		s, err := c.Dial(ctx, cell.ServiceExit, snk.addr())
		if err != nil {
			b.Fatal(err)
		}
		streams[i] = s
	}
	relay := tn.engines[1]
	idleRelay := relay.Stats().Memory
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var (
		dead     atomic.Int64 // pumps that stopped on an error before stop
		firstErr atomic.Pointer[error]
	)
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pump(s, stop, 0); err != nil {
				dead.Add(1)
				firstErr.CompareAndSwap(nil, &err)
			}
		}()
	}
	defer func() {
		close(stop)
		for _, s := range streams {
			_ = s.Close()
		}
		wg.Wait()
	}()
	sum := func(v []int64) (t int64) {
		for _, x := range v {
			t += x
		}
		return t
	}
	// Every circuit is under way before the clock starts.
	waitFor(ctx, b, "every circuit to deliver", func() bool {
		v := snk.snapshot()
		return len(v) == n && slices.Min(v) > 0
	})
	start := snk.snapshot()
	want := sum(start) + int64(b.N)*n*benchChunk
	b.SetBytes(n * benchChunk)
	b.ResetTimer()
	var activeRelay int64
	waitFor(ctx, b, "the bytes", func() bool {
		activeRelay = max(activeRelay, relay.Stats().Memory)
		return sum(snk.snapshot()) >= want
	})
	b.StopTimer()
	activeHeap := heapInUse()
	end := snk.snapshot()
	got := make([]int64, n)
	for i := range got {
		got[i] = end[i] - start[i]
	}
	mean := float64(sum(got)) / n
	b.ReportMetric(float64(slices.Min(got))/mean, "slowest/mean")
	// A circuit that failed delivers nothing from then on: count it
	// apart from a slow one.
	b.ReportMetric(float64(dead.Load()), "failed-circuits")
	if err := firstErr.Load(); err != nil {
		b.Logf("%d of %d circuits failed; the first: %v", dead.Load(), n, *err)
	}
	// How far apart the circuits' congestion windows ended (§5.2).
	cw := make([]int, n)
	for i, s := range streams {
		s.ep.mu.Lock()
		cw[i] = s.ep.cwndLocked()
		s.ep.mu.Unlock()
	}
	b.ReportMetric(float64(slices.Min(cw)), "cwnd-min")
	b.ReportMetric(float64(slices.Max(cw)), "cwnd-max")
	b.ReportMetric(float64(idleRelay)/n, "relay-B/idle-circ")
	b.ReportMetric(float64(activeRelay)/n, "relay-peak-B/active-circ")
	b.ReportMetric((float64(activeHeap)-float64(heap0))/n, "heap-B/active-circ")
}

// BenchmarkInteractive is a 1-byte echo on a ready 3-hop circuit, alone
// and beside a bulk circuit on the same three links (bench.sh prints
// beside/alone; target ≤ 2): one that sends as fast as it can, which here
// makes the two CPUs the bottleneck, and one paced to 40 MB/s. The
// control, bulk-on-other-links, runs the unpaced bulk circuit through
// three other relays: what sharing the CPUs alone costs the echo. Each
// reports where the echo's cells waited, per echo (cellTrace): in our
// per-circuit queues, in the links' buffers below the writers (bufio,
// yamux, the secure channel, the kernel), and in the nodes (handling,
// the destination, the benchmark itself); the bulk runs also report the
// bulk circuit's window and what it had in flight, and per link what it
// had in our queues (qN-cells) and in the link's buffers (transitN-cells).
func BenchmarkInteractive(b *testing.B) {
	tn := newTestNet(b, 7, nil)
	srv := newTCPServer(b, echo)
	snk := newSink(b)
	ctx := testCtx(b)
	inter := tn.build(ctx, 1, 2, 3)
	bulk := tn.build(ctx, 1, 2, 3)
	// The control: a bulk circuit through three other relays, which
	// shares only the CPUs with the interactive one.
	other := tn.build(ctx, 4, 5, 6)
	s, err := inter.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	one := []byte{'x'}
	var got [1]byte
	for _, tc := range []struct {
		name string
		bulk *Circuit
		rate int // bytes a second; 0 = as fast as it can
	}{{"alone", nil, 0}, {"beside-bulk", bulk, 0}, {"beside-paced-bulk", bulk, 40 << 20}, {"bulk-on-other-links", other, 0}} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.bulk != nil {
				bs, err := tc.bulk.Dial(ctx, cell.ServiceExit, snk.addr())
				if err != nil {
					b.Fatal(err)
				}
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					_ = pump(bs, stop, tc.rate)
				}()
				defer func() {
					close(stop)
					_ = bs.Close()
					<-done
				}()
				// The bulk circuit is at full speed before the clock starts.
				from := snk.n.Load()
				bctx, cancel := context.WithCancel(ctx)
				defer cancel()
				// 32 MiB: several windows, so that its congestion window
				// has settled (§5.2).
				waitFor(bctx, b, "bulk data", func() bool { return snk.n.Load()-from > 32<<20 })
				path := []int{0, 1, 2, 3}
				if tc.bulk == other {
					path = []int{0, 4, 5, 6}
				}
				ps := startPathSampler(tn, path, bs.ep)
				defer ps.report(b)
				b.ResetTimer()
			}
			tr := traceCircuit(b, tn, inter, []int{1, 2, 3})
			ops := 0
			for b.Loop() {
				if _, err := s.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(s, got[:]); err != nil {
					b.Fatal(err)
				}
				ops++
			}
			tr.report(b, ops)
		})
	}
}

// pathSampler samples, while a benchmark runs, where a circuit's cells
// wait along the forward path through engines idx[0] → idx[1] → …: in
// our own per-circuit queues toward each next hop (where the link
// scheduler can pick among circuits), and between a link's writer and
// the next hop's reader (bufio, yamux, the secure channel and the kernel,
// first in first out), and of those how many are in our own bufio
// buffers at either end (rbufN-cells, wbufN-cells). It also samples one
// endpoint's cells in flight and congestion window.
type pathSampler struct {
	queued, transit []float64 // summed per link; divide by n
	rbuf, wbuf      []float64 // of transit: in the reader's, the writer's bufio
	inflight, cwnd  float64
	n               int
	stop, done      chan struct{}
}

func startPathSampler(tn *testNet, idx []int, ep *endpoint) *pathSampler {
	ps := &pathSampler{
		queued:  make([]float64, len(idx)-1),
		transit: make([]float64, len(idx)-1),
		rbuf:    make([]float64, len(idx)-1),
		wbuf:    make([]float64, len(idx)-1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	links := func(i int) (out, in *link) {
		a, b := tn.engines[idx[i]], tn.engines[idx[i+1]]
		a.mu.Lock()
		out = a.out[tn.hosts[idx[i+1]].ID()]
		a.mu.Unlock()
		b.mu.Lock()
		in = b.in[tn.hosts[idx[i]].ID()]
		b.mu.Unlock()
		return out, in
	}
	go func() {
		defer close(ps.done)
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ps.stop:
				return
			case <-t.C:
			}
			for i := range ps.queued {
				out, in := links(i)
				if out == nil || in == nil {
					continue
				}
				out.smu.Lock()
				q := out.ctrl.n
				for _, c := range out.heap {
					q += c.cells.n
				}
				out.smu.Unlock()
				ps.queued[i] += float64(q)
				ps.transit[i] += float64(out.cellsOut.Load() - in.cellsIn.Load())
				ps.rbuf[i] += float64(in.rBuffered.Load()) / cell.Size
				ps.wbuf[i] += float64(out.wBuffered.Load()) / cell.Size
			}
			ep.mu.Lock()
			ps.inflight += float64(ep.inflight)
			ps.cwnd += float64(ep.cwndLocked())
			ep.mu.Unlock()
			ps.n++
		}
	}()
	return ps
}

// report stops the sampler and reports its averages on b.
func (ps *pathSampler) report(b *testing.B) {
	close(ps.stop)
	<-ps.done
	if ps.n == 0 {
		return
	}
	n := float64(ps.n)
	for i := range ps.queued {
		b.ReportMetric(ps.queued[i]/n, fmt.Sprintf("q%d-cells", i+1))
		b.ReportMetric(ps.transit[i]/n, fmt.Sprintf("transit%d-cells", i+1))
		b.ReportMetric(ps.rbuf[i]/n, fmt.Sprintf("rbuf%d-cells", i+1))
		b.ReportMetric(ps.wbuf[i]/n, fmt.Sprintf("wbuf%d-cells", i+1))
	}
	b.ReportMetric(ps.inflight/n, "bulk-inflight")
	b.ReportMetric(ps.cwnd/n, "bulk-cwnd")
}

// traceCircuit starts a cellTrace of c's cells along path (engine indices
// of its hops; the client is engine 0), in both directions.
func traceCircuit(tb testing.TB, tn *testNet, c *Circuit, path []int) *cellTrace {
	t := &cellTrace{peer: make(map[*link]*link)}
	setTrace := func(q *circQueue) {
		if q == nil {
			return
		}
		q.l.smu.Lock()
		q.trace = t
		q.l.smu.Unlock()
	}
	setTrace(c.q)
	id := c.q.id
	prev := 0
	for _, i := range path {
		a, b := tn.engines[prev], tn.engines[i]
		a.mu.Lock()
		out := a.out[tn.hosts[i].ID()]
		a.mu.Unlock()
		b.mu.Lock()
		in := b.in[tn.hosts[prev].ID()]
		var h *hop
		for x := range b.hops {
			if x.prev == in && x.prevID == id {
				h = x
			}
		}
		b.mu.Unlock()
		if out == nil || in == nil || h == nil {
			tb.Fatalf("trace: no link or hop at engine %d", i)
		}
		t.peer[out], t.peer[in] = in, out
		h.mu.Lock()
		nq, nextID := h.nq, h.nextID
		h.mu.Unlock()
		setTrace(h.pq)
		setTrace(nq)
		id, prev = nextID, i
	}
	return t
}

// report reports the trace's time per operation by stage.
func (t *cellTrace) report(b *testing.B, ops int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ops == 0 {
		return
	}
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(ops) }
	b.ReportMetric(us(t.total[traceTake]), "µs-in-our-queues/op")
	b.ReportMetric(us(t.total[traceRead]), "µs-in-link-buffers/op")
	b.ReportMetric(us(t.total[tracePush]), "µs-in-nodes/op")
}
