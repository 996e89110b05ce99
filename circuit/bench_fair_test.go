package circuit

import (
	"context"
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
// rate bytes a second (0: as fast as it can).
func pump(s *Stream, stop <-chan struct{}, rate int) {
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
			return
		default:
		}
		if tick != nil {
			select {
			case <-stop:
				return
			case <-tick:
			}
		}
		if _, err := s.Write(buf); err != nil {
			return
		}
	}
}

// BenchmarkManyCircuits runs 100 bulk circuits at once from one client
// through one relay and an exit to 100 sink connections, and reports the
// aggregate throughput and how evenly the circuits shared the links: the
// bytes the slowest circuit delivered over the mean, in the same window
// (target ≥ 0.5).
func BenchmarkManyCircuits(b *testing.B) {
	const n = 100
	tn := newTestNet(b, 3, nil)
	snk := newCountingSink(b)
	ctx := testCtx(b)
	streams := make([]*Stream, n)
	for i := range streams {
		c := tn.build(ctx, 1, 2)
		s, err := c.Dial(ctx, cell.ServiceExit, snk.addr())
		if err != nil {
			b.Fatal(err)
		}
		streams[i] = s
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, s := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pump(s, stop, 0)
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
	waitFor(ctx, b, "the bytes", func() bool { return sum(snk.snapshot()) >= want })
	b.StopTimer()
	end := snk.snapshot()
	got := make([]int64, n)
	for i := range got {
		got[i] = end[i] - start[i]
	}
	mean := float64(sum(got)) / n
	b.ReportMetric(float64(slices.Min(got))/mean, "slowest/mean")
}

// BenchmarkInteractive is a 1-byte echo on a ready 3-hop circuit, alone
// and beside a bulk circuit on the same three links (bench.sh prints
// beside/alone; target ≤ 2): one that sends as fast as it can, which here
// makes the two CPUs the bottleneck, and one paced to 40 MB/s.
func BenchmarkInteractive(b *testing.B) {
	tn := newTestNet(b, 4, nil)
	srv := newTCPServer(b, echo)
	snk := newSink(b)
	ctx := testCtx(b)
	inter := tn.build(ctx, 1, 2, 3)
	bulk := tn.build(ctx, 1, 2, 3)
	s, err := inter.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	one := []byte{'x'}
	var got [1]byte
	for _, tc := range []struct {
		name string
		bulk bool
		rate int // bytes a second; 0 = as fast as it can
	}{{"alone", false, 0}, {"beside-bulk", true, 0}, {"beside-paced-bulk", true, 40 << 20}} {
		b.Run(tc.name, func(b *testing.B) {
			if tc.bulk {
				bs, err := bulk.Dial(ctx, cell.ServiceExit, snk.addr())
				if err != nil {
					b.Fatal(err)
				}
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					pump(bs, stop, tc.rate)
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
				waitFor(bctx, b, "bulk data", func() bool { return snk.n.Load()-from > 4<<20 })
				b.ResetTimer()
			}
			for b.Loop() {
				if _, err := s.Write(one); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(s, got[:]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
