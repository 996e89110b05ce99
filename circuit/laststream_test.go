package circuit

import (
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Tests of the last hop's streams: what END frees, dials in flight, the
// memory budget, and destinations that never read.

// sinkServer is a loopback TCP destination that reads nothing until its
// gate opens; then each connection is read to its end and the byte count
// and error reported on got (room for max results; max 0 makes a server
// that only accepts and holds, with no goroutine per connection). A
// small rcvbuf (with smallSendBegin at the exit) keeps what a destination
// does not read in the exit's stream buffers rather than the kernel's;
// 0 keeps the default.
type sinkServer struct {
	ln   net.Listener
	gate chan struct{}
	got  chan sinkResult
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns []net.Conn // guarded by mu
}

type sinkResult struct {
	n   int64
	err error
}

func newSinkServer(t testing.TB, max int, rcvbuf int) *sinkServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sinkServer{ln: ln, gate: make(chan struct{}), got: make(chan sinkResult, max)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if rcvbuf > 0 {
				_ = c.(*net.TCPConn).SetReadBuffer(rcvbuf)
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			if max == 0 {
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				<-s.gate
				n, err := io.Copy(io.Discard, c)
				select {
				case s.got <- sinkResult{n, err}:
				default:
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.open()
		s.closeAll()
		s.wg.Wait()
	})
	return s
}

// open lets every connection read; safe to call twice.
func (s *sinkServer) open() {
	select {
	case <-s.gate:
	default:
		close(s.gate)
	}
}

// closeAll closes every accepted connection.
func (s *sinkServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func (s *sinkServer) addr() cell.Target {
	t, err := cell.ParseTarget(s.ln.Addr().String())
	if err != nil {
		panic("test server address: " + err.Error())
	}
	return t
}

// next waits for one connection's result.
func (s *sinkServer) next(ctx context.Context, t testing.TB) sinkResult {
	t.Helper()
	select {
	case r := <-s.got:
		return r
	case <-ctx.Done():
		t.Fatal("timed out waiting for the destination to see its connection end")
		return sinkResult{}
	}
}

// smallSendBegin is loopbackBegin with a small send buffer on the
// destination conn, so that what the destination does not read stays in
// the exit's stream buffers rather than the kernel's.
func smallSendBegin(ctx context.Context, req BeginRequest) (net.Conn, error) {
	c, err := loopbackBegin(ctx, req)
	if err == nil {
		_ = c.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}

// sendRawEnd sends END reason r for stream id, as a client that gives up
// on it would, without touching the client's own stream table.
func sendRawEnd(t testing.TB, c *Circuit, id uint16, r cell.EndReason) {
	t.Helper()
	b, err := (&cell.End{Reason: r}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.sendToLast(cell.RelayEnd, id, b); err != nil {
		t.Fatal(err)
	}
}

func sendRawBegin(t testing.TB, c *Circuit, id uint16, target cell.Target) {
	t.Helper()
	b, err := (&cell.Begin{Service: cell.ServiceExit, Target: target}).AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.sendToLast(cell.RelayBegin, id, b); err != nil {
		t.Fatal(err)
	}
}

// waitExitIdle waits until e holds no last-hop stream and nothing but
// circuits relayed circuits in its memory budget: every stream's
// destination is closed, its buffers freed and its goroutines gone.
func waitExitIdle(ctx context.Context, t testing.TB, e *Engine, circuits int) {
	t.Helper()
	waitFor(ctx, t, "the exit to free its streams", func() bool {
		st := e.Stats()
		return st.Streams == 0 && st.PendingBegins == 0 && st.Memory == int64(circuits)*circuitCost
	})
}

// exitStream returns the one stream e holds at its last hop.
func exitStream(e *Engine) *Stream {
	e.mu.Lock()
	defer e.mu.Unlock()
	for h := range e.hops {
		h.mu.Lock()
		x := h.exit
		h.mu.Unlock()
		if x == nil {
			continue
		}
		x.ep.mu.Lock()
		for _, s := range x.ep.streams {
			x.ep.mu.Unlock()
			return s
		}
		x.ep.mu.Unlock()
	}
	return nil
}

// TestEndClosesDestination: END closes the exit's destination conn and
// frees the stream — at once for an error reason, after writing what was
// buffered for END done (so a client that writes and closes loses no
// tail), and within EndLinger for END done to a destination that never
// reads. The destination sees its connection end each time.
func TestEndClosesDestination(t *testing.T) {
	t.Parallel()
	const n = 1 << 20 // about 259 DATA cells, within a stream window
	for _, tc := range []struct {
		name   string
		reason cell.EndReason
		linger time.Duration
		reads  bool // the destination reads from the start
	}{
		{"done, destination reads everything first", cell.EndDone, time.Hour, true},
		{"done, destination never reads, linger ends it", cell.EndDone, 50 * time.Millisecond, false},
		{"misc, destination never reads, closed at once", cell.EndMisc, time.Hour, false},
		{"destroyed, destination reads, closed at once", cell.EndDestroyed, time.Hour, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 2, func(i int, cfg *Config) {
				if !tc.reads {
					cfg.Begin = smallSendBegin
				}
				cfg.Limits.EndLinger = tc.linger
			})
			srv := newSinkServer(t, 1, 4096)
			if tc.reads {
				srv = newSinkServer(t, 1, 0)
				srv.open()
			}
			ctx := testCtx(t)
			c := tn.build(ctx, 1)
			s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.CopyN(s, newPattern(), n); err != nil {
				t.Fatal(err)
			}
			if tc.reason == cell.EndDone {
				_ = s.Close()
			} else {
				sendRawEnd(t, c, s.id, tc.reason)
			}
			// With EndLinger an hour, only END itself can free the
			// stream before the test's deadline.
			waitExitIdle(ctx, t, tn.engines[1], 1)
			srv.open()
			got := srv.next(ctx, t)
			if tc.reason == cell.EndDone && tc.reads && (got.n != n || got.err != nil) {
				t.Fatalf("destination got %d bytes, %v; want all %d and EOF", got.n, got.err, n)
			}
			if got.n > n {
				t.Fatalf("destination got %d bytes of %d", got.n, n)
			}
			_ = s.Close()
			if c.Err() != nil {
				t.Fatalf("END broke the circuit: %v", c.Err())
			}
		})
	}
}

// TestDialsInFlightCapped: BEGIN+END pairs never run more Begin hooks at
// once than MaxStreamsPerCircuit per circuit and MaxPendingBegins per
// node; a conn dialed for a stream that already ended is closed as soon
// as the hook returns, and the slots come back.
func TestDialsInFlightCapped(t *testing.T) {
	t.Parallel()
	const pairs = 300
	for _, tc := range []struct {
		name      string
		circuits  int
		perCirc   int // MaxStreamsPerCircuit at the exit
		pending   int // MaxPendingBegins at the exit
		wantPeak  int
		wantDials int
	}{
		{"per circuit", 1, 0, 0, 64, 64},
		{"per circuit, three circuits", 3, 8, 0, 24, 24},
		{"node-wide", 3, 0, 10, 10, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newSinkServer(t, tc.wantDials, 0)
			srv.open()
			release := make(chan struct{})
			var running, peak, calls atomic.Int64
			hook := func(ctx context.Context, req BeginRequest) (net.Conn, error) {
				calls.Add(1)
				cur := running.Add(1)
				defer running.Add(-1)
				for {
					p := peak.Load()
					if cur <= p || peak.CompareAndSwap(p, cur) {
						break
					}
				}
				select {
				case <-release:
				case <-ctx.Done():
					return nil, ErrTimeout
				}
				return loopbackBegin(ctx, req)
			}
			tn := newTestNet(t, 2, func(i int, cfg *Config) {
				if i == 1 {
					cfg.Begin = hook
					cfg.Limits.MaxStreamsPerCircuit = tc.perCirc
					cfg.Limits.MaxPendingBegins = tc.pending
				}
			})
			ctx := testCtx(t)
			cs := make([]*Circuit, tc.circuits)
			for i := range cs {
				cs[i] = tn.build(ctx, 1)
			}
			for id := uint16(1); id <= pairs; id++ {
				for _, c := range cs {
					sendRawBegin(t, c, id, srv.addr())
					sendRawEnd(t, c, id, cell.EndDone)
				}
			}
			// Cells are handled in order: once a RESOLVE behind the pairs
			// is refused, every BEGIN before it has been seen.
			for _, c := range cs {
				if _, err := c.Resolve(ctx, "localhost"); !errors.Is(err, ErrResourceLimit) {
					t.Fatalf("resolve behind the pairs = %v, want ErrResourceLimit", err)
				}
			}
			waitFor(ctx, t, "the hooks to start", func() bool { return running.Load() == int64(tc.wantPeak) })
			if got := tn.engines[1].Stats().PendingBegins; got != tc.wantPeak {
				t.Fatalf("PendingBegins = %d, want %d", got, tc.wantPeak)
			}
			close(release)
			// Each dial lands on a stream that has ended: the exit closes
			// it at once, so the destination sees EOF with no data.
			for range tc.wantDials {
				if got := srv.next(ctx, t); got.n != 0 || got.err != nil {
					t.Fatalf("destination got %d bytes, %v; want EOF", got.n, got.err)
				}
			}
			waitExitIdle(ctx, t, tn.engines[1], tc.circuits)
			if p, n := peak.Load(), calls.Load(); p != int64(tc.wantPeak) || n != int64(tc.wantDials) {
				t.Fatalf("%d hook calls, %d at once; want %d, %d at once", n, p, tc.wantDials, tc.wantPeak)
			}
			// The slots are back: a normal stream opens.
			s, err := cs[0].Dial(ctx, cell.ServiceExit, srv.addr())
			if err != nil {
				t.Fatalf("dial after the storm: %v", err)
			}
			_ = s.Close()
		})
	}
}

// TestHalfOpenDestinations: a destination that stops sending without
// reading, and one that neither reads nor writes, hold no more than one
// stream window at the exit and are freed when the stream ends.
func TestHalfOpenDestinations(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	t.Run("destination half-closes and never reads", func(t *testing.T) {
		t.Parallel()
		tn := newTestNet(t, 2, func(i int, cfg *Config) { cfg.Begin = smallSendBegin })
		stop := make(chan struct{})
		srv := newTCPServer(t, func(c net.Conn) {
			_ = c.(*net.TCPConn).SetReadBuffer(4096)
			_ = c.(*net.TCPConn).CloseWrite()
			<-stop
		})
		t.Cleanup(func() { close(stop) }) // before srv's cleanup waits for it
		c := tn.build(ctx, 1)
		s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_, _ = io.CopyN(s, newPattern(), 1<<20)
		}()
		// No half-close on a stream (§5.2): the destination's FIN is END.
		if _, err := io.Copy(io.Discard, s); err != nil {
			t.Fatalf("read = %v, want EOF", err)
		}
		_ = s.Close()
		<-wrote
		waitExitIdle(ctx, t, tn.engines[1], 1)
	})
	t.Run("destination silent, client writes a window and stops", func(t *testing.T) {
		t.Parallel()
		tn := newTestNet(t, 2, func(i int, cfg *Config) {
			cfg.Begin = smallSendBegin
			cfg.Limits.EndLinger = 50 * time.Millisecond
		})
		srv := newSinkServer(t, 1, 4096)
		c := tn.build(ctx, 1)
		s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		wrote := make(chan error, 1)
		go func() {
			_, err := io.CopyN(s, newPattern(), 8<<20) // blocks once the window is spent
			wrote <- err
		}()
		var xs *Stream
		waitFor(ctx, t, "the stream window to fill", func() bool {
			if xs == nil {
				xs = exitStream(tn.engines[1])
			}
			if xs == nil {
				return false
			}
			xs.mu.Lock()
			defer xs.mu.Unlock()
			return xs.recvWin == 0
		})
		bound := circuitCost + streamCost + streamWindow*chunkCost
		if m := tn.engines[1].Stats().Memory; m > bound {
			t.Fatalf("exit holds %d bytes, want ≤ %d (one stream window)", m, bound)
		}
		_ = s.Close()
		if err := <-wrote; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("write after Close = %v", err)
		}
		waitExitIdle(ctx, t, tn.engines[1], 1)
	})
}

// TestMemoryBudget: with the budget past 3/4, BEGIN gets END resource
// limit and CREATE gets DESTROY resource limit; a stream whose next DATA
// cell does not fit is ended with END resource limit; once memory is
// given back, streams and circuits open again.
func TestMemoryBudget(t *testing.T) {
	t.Parallel()
	const budget = 1 << 20
	// The destination is an in-memory pipe nobody reads: every DATA cell
	// past the first stays in the exit's stream buffer.
	var mu sync.Mutex
	var peers []net.Conn
	begin := func(ctx context.Context, req BeginRequest) (net.Conn, error) {
		a, b := net.Pipe()
		mu.Lock()
		peers = append(peers, b)
		mu.Unlock()
		return a, nil
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range peers {
			_ = p.Close()
		}
	})
	tn := newTestNet(t, 3, func(i int, cfg *Config) {
		cfg.Begin = begin
		cfg.Limits.MemoryBudget = budget
	})
	ctx := testCtx(t)
	exit := tn.engines[1]
	target := mustTarget(t, "127.0.0.1:1")
	c := tn.build(ctx, 1)
	a, err := c.Dial(ctx, cell.ServiceExit, target)
	if err != nil {
		t.Fatal(err)
	}
	// 200 cells: one is in the pump, 199 buffered, 849,099 bytes with the
	// circuit and the stream: past 3/4 of the budget, within it.
	cellData := make([]byte, cell.MaxData(1))
	writeCells := func(n int) error {
		for range n {
			if _, err := a.Write(cellData); err != nil {
				return err
			}
		}
		return nil
	}
	if err := writeCells(200); err != nil {
		t.Fatal(err)
	}
	want := circuitCost + streamCost + 199*chunkCost
	waitFor(ctx, t, "the exit to buffer the data", func() bool { return exit.Stats().Memory == want })
	if _, err := c.Dial(ctx, cell.ServiceExit, target); !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("dial past 3/4 of the budget = %v, want ErrResourceLimit", err)
	}
	if _, err := tn.engines[0].Build(ctx, tn.path(1)); !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("build past 3/4 of the budget = %v, want ErrResourceLimit", err)
	}
	// A relay that is not the one under pressure still builds.
	tn.build(ctx, 2)
	// 100 more cells do not fit: the stream is ended, its buffers freed.
	if err := writeCells(100); err != nil && !errors.Is(err, ErrResourceLimit) {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, a); !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("read on the stream that overflowed = %v, want ErrResourceLimit", err)
	}
	waitExitIdle(ctx, t, exit, 1)
	if c.Err() != nil {
		t.Fatalf("the budget broke the circuit: %v", c.Err())
	}
	b, err := c.Dial(ctx, cell.ServiceExit, target)
	if err != nil {
		t.Fatalf("dial after memory came back: %v", err)
	}
	_ = b.Close()
	tn.build(ctx, 1)
}

// TestBeginEndStormMemory: 1,000 streams that each send 64 KiB to a
// destination that never reads, then END, leave the exit's heap where it
// was. Bound: 2 MiB in all (2 KiB per stream), for what does not scale
// with the streams — sync.Pool and runtime noise — against the 64 MiB the
// buffered cells take while the streams are open (before END freed them
// they stayed until the circuit died). The client's circuit and streams
// are in the same heap; its streams are closed too.
//
// Not parallel: it measures the process's heap, so it runs alone.
func TestBeginEndStormMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector inflates memory")
	}
	const streams, perStream, wave = 1000, 64 << 10, 32
	tn := newTestNet(t, 2, func(i int, cfg *Config) {
		cfg.Begin = smallSendBegin
		cfg.Limits.EndLinger = 20 * time.Millisecond
	})
	srv := newSinkServer(t, 0, 4096)
	ctx := testCtx(t)
	c := tn.build(ctx, 1)
	exit := tn.engines[1]
	storm := func(n int) (peak int64) {
		for done := 0; done < n; done += wave {
			ss := make([]*Stream, 0, wave)
			for range min(wave, n-done) {
				s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.CopyN(s, newPattern(), perStream); err != nil {
					t.Fatal(err)
				}
				ss = append(ss, s)
			}
			peak = max(peak, exit.Stats().Memory)
			for _, s := range ss {
				_ = s.Close()
			}
			waitExitIdle(ctx, t, exit, 1)
			srv.closeAll()
		}
		return peak
	}
	storm(wave) // warm up pools and the hosts' connection
	g0 := runtime.NumGoroutine()
	before := heapInUse()
	peak := storm(streams)
	after := heapInUse()
	g1 := runtime.NumGoroutine()
	t.Logf("%d streams × %d KiB then END: exit budget peak %d KiB; heap %d → %d KiB (%+d bytes per stream); goroutines %d → %d",
		streams, perStream>>10, peak>>10, before>>10, after>>10, (int64(after)-int64(before))/streams, g0, g1)
	if grow := int64(after) - int64(before); grow > 2<<20 {
		t.Errorf("heap grew by %d bytes over %d streams, want ≤ 2 MiB", grow, streams)
	}
	if g1-g0 > 10 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
}
