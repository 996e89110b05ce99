package circuit

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// feed gives v n SENDMEs, each with the RTT rtt(i).
func feed(v *vegas, n int, rtt func(i int) time.Duration) {
	for i := range n {
		v.onSendme(rtt(i))
	}
}

func constRTT(d time.Duration) func(int) time.Duration {
	return func(int) time.Duration { return d }
}

func TestVegasSlowStartGrowsToMax(t *testing.T) {
	t.Parallel()
	v := newVegas(circWindow, circMinWindow, circMaxWindow)
	feed(v, 4, constRTT(600*time.Millisecond))
	if want := circWindow + 4*circIncrement; v.cwnd != want || !v.slowStart {
		t.Fatalf("after 4 SENDMEs: cwnd %d slowStart %v, want %d in slow start", v.cwnd, v.slowStart, want)
	}
	feed(v, 100, constRTT(600*time.Millisecond))
	if v.cwnd != circMaxWindow || v.slowStart {
		t.Fatalf("cwnd %d slowStart %v, want %d out of slow start", v.cwnd, v.slowStart, circMaxWindow)
	}
}

func TestVegasLeavesSlowStartOnQueue(t *testing.T) {
	t.Parallel()
	v := newVegas(circWindow, circMinWindow, circMaxWindow)
	feed(v, 2, constRTT(100*time.Millisecond)) // cwnd 2112, minRTT 100ms
	// The RTT doubles: half the window is queued, far above gamma. Slow
	// start ends at once; the window follows the RTT's moving average
	// down.
	feed(v, 1000, constRTT(200*time.Millisecond))
	if v.slowStart {
		t.Fatal("still in slow start with a queue of half the window")
	}
	// bdp + gamma: about half the window, plus gamma.
	if v.cwnd >= circWindow || v.cwnd < circMinWindow {
		t.Fatalf("cwnd %d, want bdp + gamma, below the start %d and not below the floor %d", v.cwnd, circWindow, circMinWindow)
	}
}

func TestVegasSteadyState(t *testing.T) {
	t.Parallel()
	v := newVegas(circWindow, circMinWindow, circMaxWindow)
	v.slowStart = false
	v.untilNext = 1
	base := 100 * time.Millisecond
	// No queue: grows one step per window of SENDMEs; at 2048 cells the
	// step is 4 × vegasStep (thresholds scale above 512).
	_, _, _, _, step := v.thresholds()
	if step != 4*vegasStep {
		t.Fatalf("step %d at cwnd %d, want %d", step, v.cwnd, 4*vegasStep)
	}
	feed(v, 1, constRTT(base))
	if v.cwnd != circWindow+step {
		t.Fatalf("cwnd %d, want %d", v.cwnd, circWindow+step)
	}
	// Each step waits for a window of SENDMEs: (4096−2048)/32 steps of
	// at most 128 SENDMEs each.
	feed(v, 64*128, constRTT(base))
	if v.cwnd != circMaxWindow {
		t.Fatalf("cwnd %d, want max %d", v.cwnd, circMaxWindow)
	}
	// A queue between alpha and beta (at 4096 cells: 256 and 768) holds
	// the window: 4096×(rtt−min)/rtt = 512 cells at rtt = base × 8/7.
	hold := base * 8 / 7
	feed(v, 1000, constRTT(hold))
	if alpha, beta, _, _, _ := v.thresholds(); v.queue() <= alpha || v.queue() >= beta {
		t.Fatalf("queue %d not between alpha %d and beta %d", v.queue(), alpha, beta)
	}
	if v.cwnd != circMaxWindow {
		t.Fatalf("cwnd %d moved with a queue between alpha and beta", v.cwnd)
	}
	// A long queue (nine tenths of the window) cuts it until no more
	// than beta cells are queued: to within a step above beta, never
	// below the floor.
	feed(v, 4000, constRTT(10*base))
	if v.cwnd < circMinWindow || v.cwnd > vegasBeta+vegasStep || v.queue() > vegasBeta {
		t.Fatalf("cwnd %d queue %d, want at most beta %d queued, cwnd in [%d, %d]", v.cwnd, v.queue(), vegasBeta, circMinWindow, vegasBeta+vegasStep)
	}
}

func TestVegasIgnoresBadClock(t *testing.T) {
	t.Parallel()
	v := newVegas(circWindow, circMinWindow, circMaxWindow)
	feed(v, 5, constRTT(0))
	feed(v, 5, constRTT(-time.Second))
	if v.cwnd != circWindow || v.minRTT != 0 || v.rtt != 0 {
		t.Fatalf("bad samples moved the window: %+v", *v)
	}
}

func TestVegasMaxBelowMin(t *testing.T) {
	t.Parallel()
	// A node whose MaxCircuitQueue is small keeps the old fixed window.
	v := newVegas(circWindow, circMinWindow, 100)
	feed(v, 50, constRTT(time.Millisecond))
	if v.cwnd != circWindow {
		t.Fatalf("cwnd %d, want %d", v.cwnd, circWindow)
	}
}

// testEndpoint is an endpoint whose clock advances only when told.
func testEndpoint(l Limits) (*endpoint, *time.Time) {
	l.setDefaults()
	e := &Engine{cfg: Config{Limits: l}}
	ep := newEndpoint(e, 1000, nil)
	clock := time.Unix(1000, 0)
	ep.now = func() time.Time { return clock }
	return ep, &clock
}

func TestEndpointSendmeRTT(t *testing.T) {
	t.Parallel()
	ep, clock := testEndpoint(Limits{})
	if ep.cwndLocked() != circWindow {
		t.Fatalf("initial window %d", ep.cwndLocked())
	}
	// A SENDME before circIncrement cells were sent is a violation.
	for range circIncrement - 1 {
		ep.takeLocked()
	}
	if err := ep.onSendme(0); !errors.Is(err, ErrProtocol) {
		t.Fatalf("early SENDME: %v", err)
	}
	ep.takeLocked()
	*clock = clock.Add(300 * time.Millisecond)
	if err := ep.onSendme(0); err != nil {
		t.Fatal(err)
	}
	if ep.inflight != 0 || ep.cc.minRTT != 300*time.Millisecond {
		t.Fatalf("inflight %d minRTT %v", ep.inflight, ep.cc.minRTT)
	}
	if ep.cwndLocked() != circWindow+circIncrement {
		t.Fatalf("window %d after one SENDME in slow start", ep.cwndLocked())
	}
	// Fill the window; the sender may not exceed it.
	for ep.inflight < ep.cwndLocked() {
		ep.takeLocked()
	}
	if len(ep.stamps) != ep.cwndLocked()/circIncrement {
		t.Fatalf("%d stamps for %d cells", len(ep.stamps), ep.inflight)
	}
}

func TestEndpointFixedWindows(t *testing.T) {
	t.Parallel()
	ep, clock := testEndpoint(Limits{FixedWindows: true})
	for range 20 {
		for ep.inflight < ep.cwndLocked() {
			ep.takeLocked()
		}
		*clock = clock.Add(time.Millisecond)
		if err := ep.onSendme(0); err != nil {
			t.Fatal(err)
		}
	}
	if ep.cwndLocked() != circWindow || ep.cc != nil || ep.grow {
		t.Fatalf("fixed windows moved: cwnd %d", ep.cwndLocked())
	}
}

func TestStreamGrowsOnlyWhileReaderKeepsUp(t *testing.T) {
	t.Parallel()
	ep, _ := testEndpoint(Limits{})
	s := newStream(ep, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.growLocked() {
	}
	if s.recvMax != streamMaxWindow || ep.extra.Load() != streamMaxWindow-streamWindow {
		t.Fatalf("recvMax %d extra %d", s.recvMax, ep.extra.Load())
	}
	// A second stream grows only by what is left of the circuit's credit.
	s2 := newStream(ep, 2)
	for s2.growLocked() {
	}
	if ep.extra.Load() != streamMaxExtra || s2.recvMax != streamWindow+streamMaxExtra-(streamMaxWindow-streamWindow) {
		t.Fatalf("second stream: recvMax %d extra %d", s2.recvMax, ep.extra.Load())
	}
	// Closing a stream (leaving the table, then freeing its buffers)
	// gives its credit back.
	ep.streams[1] = s
	ep.removeLocked(s)
	s.discardLocked()
	if ep.extra.Load() != streamMaxExtra-(streamMaxWindow-streamWindow) {
		t.Fatalf("extra %d after close", ep.extra.Load())
	}
	// A reader that lags by an increment does not grow its window.
	s3 := newStream(ep, 3)
	s3.chunks = make([]chunk, streamIncrement)
	ep.extra.Store(0)
	if s3.growLocked() {
		t.Fatal("grew with an increment unread")
	}
}

func TestStreamSendmeAboveMaxWindow(t *testing.T) {
	t.Parallel()
	ep, _ := testEndpoint(Limits{})
	s := newStream(ep, 1)
	ep.streams[1] = s
	// A receiver may grant credit up to streamMaxWindow, not beyond.
	for s.sendWin+streamIncrement <= streamMaxWindow {
		if err := ep.onSendme(1); err != nil {
			t.Fatal(err)
		}
	}
	if err := ep.onSendme(1); !errors.Is(err, ErrProtocol) {
		t.Fatalf("SENDME above the largest window: %v", err)
	}
}

// TestWindowsGrowOnRealCircuit: over real hosts, a stream whose
// destination keeps up ends with more credit than the fixed window, and
// with Limits.FixedWindows it never does.
func TestWindowsGrowOnRealCircuit(t *testing.T) {
	t.Parallel()
	for _, fixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "grown", true: "fixed"}[fixed], func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 4, func(_ int, cfg *Config) { cfg.Limits.FixedWindows = fixed })
			snk := newSink(t)
			ctx := testCtx(t)
			c := tn.build(ctx, 1, 2, 3)
			s, err := c.Dial(ctx, cell.ServiceExit, snk.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			buf := make([]byte, 1<<20)
			const total = 16 << 20
			for range total / len(buf) {
				if _, err := s.Write(buf); err != nil {
					t.Fatal(err)
				}
			}
			snk.waitFor(t, total)
			credit := func() int {
				c.ep.mu.Lock()
				defer c.ep.mu.Unlock()
				return s.sendWin
			}
			if fixed {
				if got := credit(); got > streamWindow {
					t.Fatalf("fixed windows: stream credit %d", got)
				}
				return
			}
			waitFor(ctx, t, "stream credit above the fixed window", func() bool { return credit() > streamWindow })
		})
	}
}

// TestStreamCreditNotLeakedAfterRemoval: a stream that left the table (the
// peer sent END) but is still being read takes no more circuit credit, and
// gives back what it held once closed; else a peer that ends streams could
// shut growth off for the whole circuit.
func TestStreamCreditNotLeakedAfterRemoval(t *testing.T) {
	t.Parallel()
	ep, _ := testEndpoint(Limits{})
	s := newStream(ep, 1)
	ep.streams[1] = s
	s.mu.Lock()
	if !s.growLocked() {
		t.Fatal("a fresh stream did not grow")
	}
	s.mu.Unlock()
	s.wErr = errStreamEnded // as onEnd: Close sends no END
	ep.removeLocked(s)
	s.mu.Lock()
	for s.growLocked() {
	}
	s.mu.Unlock()
	if got := ep.extra.Load(); got != streamIncrement {
		t.Fatalf("circuit credit %d after removal, want the %d granted before", got, streamIncrement)
	}
	_ = s.Close()
	if got := ep.extra.Load(); got != 0 {
		t.Fatalf("circuit credit %d held by a closed stream, want 0", got)
	}
}

// TestEndedStreamKeepsCreditWhileBuffered: a stream the peer ended still
// holds what it buffered (the last hop writes it out for EndLinger), so
// its extra credit must not go to other streams until its buffers are
// freed; else a peer that grows a stream, stalls it, ends it and repeats
// gets past "512 × open streams + 4096" buffered cells per circuit.
func TestEndedStreamKeepsCreditWhileBuffered(t *testing.T) {
	t.Parallel()
	ep, _ := testEndpoint(Limits{})
	s1 := newStream(ep, 1)
	ep.streams[1] = s1
	s1.mu.Lock()
	for s1.growLocked() {
	}
	s1.mu.Unlock()
	held := ep.extra.Load()
	if held != streamMaxWindow-streamWindow {
		t.Fatalf("s1 took %d extra", held)
	}
	// The peer fills s1 and sends END: s1 leaves the table, data stays.
	for range 3 {
		if err := s1.push([]byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	ep.mu.Lock()
	s1.wErr = errStreamEnded
	ep.removeLocked(s1)
	ep.mu.Unlock()
	if got := ep.extra.Load(); got != held {
		t.Fatalf("extra %d while the ended stream still buffers, want %d", got, held)
	}
	// Only what is left of the circuit's credit goes to a new stream.
	s2 := newStream(ep, 2)
	ep.streams[2] = s2
	s2.mu.Lock()
	for s2.growLocked() {
	}
	s2.mu.Unlock()
	if ep.extra.Load() > streamMaxExtra {
		t.Fatalf("extra %d over %d", ep.extra.Load(), streamMaxExtra)
	}
	// Once s1's buffers are freed its credit comes back.
	before := ep.extra.Load()
	_ = s1.Close()
	if got := ep.extra.Load(); got != before-held {
		t.Fatalf("extra %d after closing s1, want %d", got, before-held)
	}
}

// TestStreamGrowthGate: a growth gate (Circuit.SetGrowthGate) is asked
// with the window a widening would allow, in bytes, and a refusal leaves
// the stream and the circuit's extra credit as they were.
func TestStreamGrowthGate(t *testing.T) {
	t.Parallel()
	ep, _ := testEndpoint(Limits{})
	var asked []int64
	limit := int64(streamWindow+2*streamIncrement) * cell.Size
	gate := func(window int64) bool {
		asked = append(asked, window)
		return window <= limit
	}
	ep.gate.Store(&gate)
	s := newStream(ep, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.growLocked() {
	}
	if s.recvMax != streamWindow+2*streamIncrement || ep.extra.Load() != 2*streamIncrement {
		t.Fatalf("recvMax %d extra %d, want growth stopped at the gate's limit", s.recvMax, ep.extra.Load())
	}
	want := []int64{
		int64(streamWindow+streamIncrement) * cell.Size,
		int64(streamWindow+2*streamIncrement) * cell.Size,
		int64(streamWindow+3*streamIncrement) * cell.Size,
	}
	if !slices.Equal(asked, want) {
		t.Fatalf("gate asked %v, want %v", asked, want)
	}
	ep.gate.Store(nil)
	if !s.growLocked() {
		t.Fatal("no growth once the gate is removed")
	}
}

// TestVegasSharedPathRTT: a circuit that starts while its path is full
// takes the path's smallest RTT from an earlier circuit over the same
// path, so it sees the queue and leaves slow start, where with its own
// samples alone it would see none and keep growing.
func TestVegasSharedPathRTT(t *testing.T) {
	t.Parallel()
	p := &pathRTT{}
	early := newVegas(circWindow, circMinWindow, circMaxWindow)
	early.shared = p
	feed(early, 1, constRTT(10*time.Millisecond)) // the path empty
	late, alone := newVegas(circWindow, circMinWindow, circMaxWindow), newVegas(circWindow, circMinWindow, circMaxWindow)
	late.shared = p
	feed(late, 4, constRTT(100*time.Millisecond)) // the path full
	feed(alone, 4, constRTT(100*time.Millisecond))
	if late.minRTT != 10*time.Millisecond || late.slowStart || late.cwnd >= circWindow {
		t.Fatalf("late circuit: minRTT %v slowStart %v cwnd %d, want the path's 10ms, out of slow start, below %d", late.minRTT, late.slowStart, late.cwnd, circWindow)
	}
	if !alone.slowStart || alone.cwnd <= circWindow {
		t.Fatalf("unshared circuit: slowStart %v cwnd %d, want still growing in slow start", alone.slowStart, alone.cwnd)
	}
	// A smaller RTT seen later lowers the path's.
	feed(late, 1, constRTT(5*time.Millisecond))
	if got := time.Duration(p.min.Load()); got != 5*time.Millisecond {
		t.Fatalf("path min RTT %v, want 5ms", got)
	}
}

// TestPathRTTShared: circuits over the same path share one pathRTT, and
// the engine forgets it when the last of them closes.
func TestPathRTTShared(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	ctx := testCtx(t)
	a, b, other := tn.build(ctx, 1, 2), tn.build(ctx, 1, 2), tn.build(ctx, 2, 1)
	e := tn.engines[0]
	count := func() int {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.pathRTTs)
	}
	if a.prtt == nil || a.prtt != b.prtt || a.ep.cc.shared != a.prtt || other.prtt == a.prtt || count() != 2 {
		t.Fatalf("shared %p %p %p, %d paths; want a and b to share, the other path apart, 2 paths", a.prtt, b.prtt, other.prtt, count())
	}
	_ = a.Close()
	_ = other.Close()
	if count() != 1 {
		t.Fatalf("%d paths after closing a and the other, want 1", count())
	}
	_ = b.Close()
	if count() != 0 {
		t.Fatalf("%d paths after closing every circuit, want 0", count())
	}
}
