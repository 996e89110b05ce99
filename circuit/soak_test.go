package circuit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"golang.org/x/sync/errgroup"
)

// soakEnv names the environment variable that runs TestSoak for the
// duration it holds (a time.ParseDuration string such as 10m); unset, the
// test is skipped, so CI's default run does not take it.
const soakEnv = "CO_INFUSE_SOAK"

// TestSoak keeps 1,000 three-hop circuits through the same three relays
// busy for $CO_INFUSE_SOAK with a random mix of echo streams, streams to
// a destination that never reads, streams aborted with END misc, dials
// given up while in flight, and circuits closed with streams open and
// built again. Measured with every circuit up and no stream open, before
// and after every minute: the process's goroutines must not grow (±20 for
// libp2p's background work) nor its heap after GC, beyond 24 MiB: each of
// the four engines keeps up to 4 MiB of idle cells for reuse, which GC
// does not take, and 8 MiB is noise (at ~30,000 operations a minute, a
// leak of 30 bytes per operation passes it within 10 minutes). Each
// relay holds exactly the circuits that are up.
//
//	CO_INFUSE_SOAK=10m go test -run TestSoak -timeout 30m -v ./circuit/
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv(soakEnv))
	if err != nil || d <= 0 {
		t.Skipf("set %s to a duration (e.g. 10m) to run the soak", soakEnv)
	}
	const (
		circuits = 1000
		workers  = 64
	)
	tn := newTestNet(t, 4, func(i int, cfg *Config) {
		cfg.Limits.MaxCircuitsPerPeer = 2 * circuits
		cfg.Limits.EndLinger = time.Second
	})
	echoSrv := newTCPServer(t, echo)
	sink := newSinkServer(t, 0, 4096)
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Minute)
	defer cancel()

	type slot struct {
		mu sync.Mutex
		c  *Circuit // guarded by mu
	}
	slots := make([]slot, circuits)
	build := func(s *slot) error {
		c, err := tn.engines[0].Build(ctx, tn.path(1, 2, 3))
		if err != nil {
			return err
		}
		s.c = c
		return nil
	}
	// fill builds every slot whose circuit is missing or dead.
	fill := func() {
		var g errgroup.Group
		g.SetLimit(32)
		for i := range slots {
			g.Go(func() error {
				s := &slots[i]
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.c != nil && s.c.Err() == nil {
					return nil
				}
				if s.c != nil {
					_ = s.c.Close()
				}
				return build(s)
			})
		}
		if err := g.Wait(); err != nil {
			t.Fatalf("build: %v", err)
		}
	}
	t.Cleanup(func() {
		for i := range slots {
			if c := slots[i].c; c != nil {
				_ = c.Close()
			}
		}
	})
	// quiesce waits until every circuit is up with no stream open, then
	// measures the process.
	quiesce := func(what string) (heap uint64, goroutines int) {
		fill()
		for i, e := range tn.engines[1:] {
			waitFor(ctx, t, fmt.Sprintf("relay %d to settle", i+1), func() bool {
				st := e.Stats()
				return st.RelayCircuits == circuits && st.Streams == 0 && st.PendingBegins == 0 &&
					st.Memory == circuits*circuitCost
			})
		}
		waitFor(ctx, t, "client streams to close", func() bool { return tn.engines[0].Stats().Streams == 0 })
		sink.closeAll()
		heap, goroutines = heapInUse(), runtime.NumGoroutine()
		t.Logf("%s: heap %d KiB, %d goroutines", what, heap>>10, goroutines)
		return heap, goroutines
	}

	var ops [6]atomic.Int64
	var failures sync.Map // error text → *atomic.Int64
	fail := func(err error) {
		if errors.Is(err, ErrProtocol) {
			t.Errorf("protocol violation in the soak: %v", err)
		}
		v, _ := failures.LoadOrStore(err.Error(), new(atomic.Int64))
		v.(*atomic.Int64).Add(1)
	}
	buf := make([]byte, 16<<10)
	run := func(until time.Time) {
		var wg sync.WaitGroup
		// The sink never reads nor closes; the exit closes its side
		// within EndLinger. Drop the server's side every second so its
		// descriptors stay bounded.
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					sink.closeAll()
				}
			}
		}()
		defer func() {
			close(stop)
			wg.Wait()
		}()
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(until.UnixNano())))
				in := make([]byte, len(buf))
				for time.Now().Before(until) && ctx.Err() == nil {
					s := &slots[rng.IntN(circuits)]
					s.mu.Lock()
					op := rng.IntN(100)
					switch {
					case op < 40: // echo round trip
						ops[0].Add(1)
						st, err := s.c.Dial(ctx, cell.ServiceExit, echoSrv.addr())
						if err == nil {
							_, err = st.Write(buf)
							if err == nil {
								_, err = io.ReadFull(st, in)
							}
							_ = st.Close()
						}
						if err != nil {
							fail(err)
						}
					case op < 55: // a destination that never reads, then END done
						ops[1].Add(1)
						st, err := s.c.Dial(ctx, cell.ServiceExit, sink.addr())
						if err == nil {
							_, err = io.CopyN(st, newPattern(), 64<<10)
							_ = st.Close()
						}
						if err != nil {
							fail(err)
						}
					case op < 70: // aborted with END misc
						ops[2].Add(1)
						st, err := s.c.Dial(ctx, cell.ServiceExit, echoSrv.addr())
						if err == nil {
							_, _ = st.Write(buf)
							b, _ := (&cell.End{Reason: cell.EndMisc}).AppendBinary(nil)
							_ = s.c.sendToLast(cell.RelayEnd, st.id, b)
							_ = st.Close()
						}
					case op < 80: // a dial given up while in flight
						ops[3].Add(1)
						dctx, dcancel := context.WithCancel(ctx)
						dcancel()
						if st, err := s.c.Dial(dctx, cell.ServiceExit, echoSrv.addr()); err == nil {
							_ = st.Close()
						}
					case op < 90: // the circuit closed with a stream open
						ops[4].Add(1)
						if st, err := s.c.Dial(ctx, cell.ServiceExit, echoSrv.addr()); err == nil {
							_, _ = st.Write(buf)
						}
						_ = s.c.Close()
					default: // the circuit closed idle
						ops[5].Add(1)
						_ = s.c.Close()
					}
					if s.c.Err() != nil {
						if err := build(s); err != nil {
							fail(err)
							s.mu.Unlock()
							continue
						}
					}
					s.mu.Unlock()
				}
			}()
		}
	}

	fill()
	run(time.Now().Add(min(d/10, 30*time.Second))) // warm up pools and tables
	heap0, g0 := quiesce("before")
	heap1, g1 := heap0, g0
	start := time.Now()
	for time.Since(start) < d {
		run(time.Now().Add(min(time.Minute, d-time.Since(start))))
		heap1, g1 = quiesce(fmt.Sprintf("after %v, ops %d/%d/%d/%d/%d/%d", time.Since(start).Round(time.Second),
			ops[0].Load(), ops[1].Load(), ops[2].Load(), ops[3].Load(), ops[4].Load(), ops[5].Load()))
	}
	failures.Range(func(k, v any) bool {
		t.Logf("failed %d×: %s", v.(*atomic.Int64).Load(), k)
		return true
	})
	if grow := int64(heap1) - int64(heap0); grow > 24<<20 {
		t.Errorf("heap grew by %d KiB over the soak", grow>>10)
	}
	if g1-g0 > 20 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
}
