package payment

import (
	"context"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// The window arithmetic keeps the last hop inside credit plus grace: a
// read gets through pace only while carried + window ≤ windowLimit, the
// gate grants a window only with PaceBytes to spare, and beyond the base
// window the schedule tops up before reads would wait.
func TestWindowArithmetic(t *testing.T) {
	t.Parallel()
	for _, credit := range []int64{PrepayBytes, SessionGraceBytes, 5 << 20, 40 << 20} {
		for _, w := range []int64{SessionGraceBytes, 3 << 20, 8 << 20, MaxPaidWindowBytes} {
			for carried := uint64(0); carried < uint64(credit)+SessionGraceBytes; carried += 97 * cell.Size {
				reads := ahead(credit, carried) >= paceBytes(credit, w)
				// The last hop may send one window beyond what the reader
				// took, which is at most carried.
				if most := int64(carried) + w; reads && most > credit+graceFor(credit)-PaceBytes {
					t.Fatalf("credit %d, window %d, carried %d: a read goes through and the hop may charge %d, past credit plus grace less PaceBytes", credit, w, carried, most)
				}
				if reads != (int64(carried)+w <= windowLimit(credit)) {
					t.Fatalf("credit %d, window %d, carried %d: pace and windowLimit disagree", credit, w, carried)
				}
				if ahead(credit, carried) >= windowAhead(w, credit) && ahead(credit, carried) < paceBytes(credit, w)+PaceBytes {
					t.Fatalf("credit %d, window %d, carried %d: the gate's allowance leaves less than PaceBytes before reads wait", credit, w, carried)
				}
			}
			if w <= SessionGraceBytes {
				continue
			}
			for _, inflight := range []uint64{0, 1 << 20, 6 << 20} {
				low := windowAhead(w, credit) + int64(min(inflight, uint64(w)))
				if !needsTopUp(credit, uint64(credit-low+1), TargetAheadBytes, w, inflight) {
					t.Errorf("credit %d, window %d, inflight %d: no top-up below %d ahead", credit, w, inflight, low)
				}
				if got := aheadTarget(TargetAheadBytes, w, credit, inflight); got <= low {
					t.Errorf("aheadTarget(window %d, inflight %d) = %d, not above the low-water mark %d", w, inflight, got, low)
				}
			}
		}
	}
	// At the base window the schedule is the slow start alone.
	if needsTopUp(TargetAheadBytes, 0, TargetAheadBytes, SessionGraceBytes, 8<<20) || aheadTarget(PrepayBytes, SessionGraceBytes, PrepayBytes, 8<<20) != PrepayBytes {
		t.Error("the base window changed the slow-start schedule")
	}
}

func TestWantWindow(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		inflight    uint64
		took, min   time.Duration
		want        int64
		description string
	}{
		{3 << 20, 600 * ms, 600 * ms, 6 << 20, "no queue: twice what a round trip carried"},
		{3 << 20, 1200 * ms, 600 * ms, 3 << 20, "queues doubled the round trip: the path holds half"},
		{256 << 10, 5 * ms, 2 * ms, SessionGraceBytes, "loopback: the base window"},
		{1 << 30, time.Second, time.Second, MaxPaidWindowBytes, "capped"},
		{1 << 20, 0, 0, SessionGraceBytes, "no measurement"},
	} {
		if got := wantWindow(tc.inflight, tc.took, tc.min); got != tc.want {
			t.Errorf("%s: wantWindow(%d, %v, %v) = %d, want %d", tc.description, tc.inflight, tc.took, tc.min, got, tc.want)
		}
	}
}

// The growth gate grants no window beyond the base one until the
// schedule pays ahead for it, then only what every hop has been paid for,
// and pace counts the widest window granted.
func TestGrowthGate(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hops := testHops[:2]
	fc := newFakeCircuit(hops, nil)
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	if !pc.allowsWindow(SessionGraceBytes) {
		t.Fatal("the base window refused")
	}
	if pc.allowsWindow(SessionGraceBytes + 64*cell.Size) {
		t.Fatal("a window wider than the base granted before the schedule measured the path")
	}
	pc.wantWindow.Store(8 << 20)
	if pc.allowsWindow(8 << 20) {
		t.Fatalf("an 8 MiB window granted on a prepay (%+v)", pc.Stats())
	}
	// Pay every hop enough ahead for 8 MiB.
	pc.mu.Lock()
	for i := range pc.hops {
		carried := int64(fc.HopCarried(pc.hops[i].Index))
		pc.setCreditLocked(i, carried+windowAhead(8<<20, SessionGraceBytes))
	}
	pc.mu.Unlock()
	if !pc.allowsWindow(8 << 20) {
		t.Fatal("an 8 MiB window refused with every hop paid ahead for it")
	}
	if pc.allowsWindow(8<<20 + 64*cell.Size) {
		t.Fatal("a window beyond what the hops were paid for granted")
	}
	if got := pc.window.Load(); got != 8<<20 {
		t.Fatalf("granted window recorded as %d, want %d", got, 8<<20)
	}
	// A narrower window later does not shrink what pace counts on.
	if !pc.allowsWindow(4<<20) || pc.window.Load() != 8<<20 {
		t.Fatalf("granted window %d after a narrower grant", pc.window.Load())
	}
}

// The path's round trip is the smallest difference of the shortest
// top-up round trips to successive paid hops, per link, times the links
// to the farthest: a hop's redemption time does not count, and hops whose
// round trips do not grow with the path (loopback) give none.
func TestPathRTT(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		index []int
		min   []time.Duration
		want  time.Duration
	}{
		{[]int{0, 1, 2}, []time.Duration{250 * ms, 350 * ms, 450 * ms}, 300 * ms}, // 50 ms links, 150 ms redemption
		{[]int{0, 2}, []time.Duration{90 * ms, 60 * ms}, 0},                       // the far one faster: unknown
		{[]int{1, 3}, []time.Duration{100 * ms, 300 * ms}, 400 * ms},
		{[]int{0, 1, 2}, []time.Duration{250 * ms, 400 * ms, 450 * ms}, 150 * ms}, // the smallest difference
		{[]int{0, 1, 2}, []time.Duration{80 * ms, 70 * ms, 160 * ms}, 0},          // loopback: redemption times of either sign
		{[]int{0, 1, 2}, []time.Duration{80 * ms, 0, 160 * ms}, 0},                // one not measured yet
	} {
		pc := &Circuit{}
		for i, idx := range tc.index {
			pc.hops = append(pc.hops, hopState{Hop: Hop{Index: idx}, minRTT: tc.min[i]})
		}
		if got := pc.pathRTTLocked(); got != tc.want {
			t.Errorf("hops %v, shortest top-ups %v: path RTT %v, want %v", tc.index, tc.min, got, tc.want)
		}
	}
}
