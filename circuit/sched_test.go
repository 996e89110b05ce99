package circuit

import (
	"errors"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// schedLink is a link with no stream, for the scheduler alone.
func schedLink(tweak func(*Limits)) *link {
	e := &Engine{pool: cell.NewPool(64), log: slog.New(slog.DiscardHandler)}
	if tweak != nil {
		tweak(&e.cfg.Limits)
	}
	e.cfg.Limits.setDefaults()
	return &link{
		e:     e,
		wake:  make(chan struct{}, 1),
		circs: make(map[cell.CircID]*circQueue),
		tick:  time.Now().UnixNano() / int64(ewmaTick),
	}
}

// pushN queues n cells on q, each marked with q.id.
func pushN(t testing.TB, q *circQueue, n int) {
	t.Helper()
	for range n {
		c := q.l.e.pool.Get()
		c.SetCircID(q.id)
		if err := q.push(c); err != nil {
			t.Fatal(err)
		}
	}
}

// takeIDs takes up to n cells and returns their circuit IDs in order.
func takeIDs(l *link, n int) []cell.CircID {
	var ids []cell.CircID
	buf := make([]*cell.Cell, 1)
	for range n {
		if l.take(buf) == 0 {
			break
		}
		ids = append(ids, buf[0].CircID())
		l.e.pool.Put(buf[0])
	}
	return ids
}

func TestSchedulerEWMA(t *testing.T) {
	t.Parallel()
	if want := math.Pow(0.5, float64(ewmaTick)/float64(ewmaHalfLife)); math.Abs(ewmaScale-want) > 1e-15 {
		t.Fatalf("ewmaScale = %v, want %v", ewmaScale, want)
	}
	t.Run("interactive before bulk", func(t *testing.T) {
		t.Parallel()
		l := schedLink(nil)
		bulk, inter := l.newQueue(nil), l.newQueue(nil)
		bulk.id, inter.id = 1, 2
		pushN(t, bulk, 300)
		takeIDs(l, 100) // bulk has sent 100 cells
		pushN(t, inter, 2)
		got := takeIDs(l, 3)
		if want := []cell.CircID{2, 2, 1}; !equalIDs(got, want) {
			t.Fatalf("took %v, want %v: the quiet circuit first", got, want)
		}
	})
	t.Run("equal shares", func(t *testing.T) {
		t.Parallel()
		l := schedLink(nil)
		a, b := l.newQueue(nil), l.newQueue(nil)
		a.id, b.id = 1, 2
		pushN(t, a, 100)
		pushN(t, b, 100)
		n := map[cell.CircID]int{}
		for _, id := range takeIDs(l, 100) {
			n[id]++
		}
		if d := n[1] - n[2]; d < -1 || d > 1 {
			t.Fatalf("shares %v, want 50 each", n)
		}
	})
	t.Run("past use decays", func(t *testing.T) {
		t.Parallel()
		l := schedLink(nil)
		old, recent := l.newQueue(nil), l.newQueue(nil)
		old.id, recent.id = 1, 2
		// old sent 100 cells two half-lives ago (25 now); recent 30 now.
		old.ewma, old.tick = 100, l.tick-int64(2*ewmaHalfLife/ewmaTick)
		recent.ewma, recent.tick = 30, l.tick
		pushN(t, recent, 1)
		pushN(t, old, 1)
		if got := takeIDs(l, 1); !equalIDs(got, []cell.CircID{1}) {
			t.Fatalf("took %v first, want the circuit whose use has decayed", got)
		}
	})
}

func TestCircuitQueueLimits(t *testing.T) {
	t.Parallel()
	t.Run("per circuit", func(t *testing.T) {
		t.Parallel()
		l := schedLink(func(lim *Limits) { lim.MaxCircuitQueue = 10 })
		q := l.newQueue(nil)
		pushN(t, q, 10)
		if err := q.push(l.e.pool.Get()); !errors.Is(err, errQueueFull) || !errors.Is(err, ErrResourceLimit) {
			t.Fatalf("push past the cap = %v, want errQueueFull", err)
		}
		// A full queue cannot keep its cells for a TEARDOWN: both go, and
		// DESTROY alone is sent.
		if q.finish(l.e.pool.Get(), cell.ReasonResource, true) {
			t.Fatal("TEARDOWN queued behind a full queue")
		}
		c := make([]*cell.Cell, 4)
		if n := l.take(c); n != 1 || c[0].Command() != cell.CmdDestroy || parseDestroy(c[0]) != cell.ReasonResource {
			t.Fatalf("took %d cells, first %v, want one DESTROY resource", n, c[0].Command())
		}
		if err := q.push(l.e.pool.Get()); !errors.Is(err, errLinkClosed) {
			t.Fatalf("push after finish = %v, want errLinkClosed", err)
		}
		if n := l.e.queued.Load(); n != 0 {
			t.Fatalf("engine counts %d queued cells, want 0", n)
		}
	})
	t.Run("teardown follows queued cells", func(t *testing.T) {
		t.Parallel()
		l := schedLink(nil)
		q := l.newQueue(nil)
		q.id = 7
		pushN(t, q, 3)
		td := l.e.pool.Get()
		td.SetCircID(7)
		td.SetCommand(cell.CmdRelay)
		if !q.finish(td, cell.ReasonNone, true) {
			t.Fatal("TEARDOWN dropped")
		}
		c := make([]*cell.Cell, 8)
		n := l.take(c)
		if n != 5 || c[3].Command() != cell.CmdRelay || c[4].Command() != cell.CmdDestroy || parseDestroy(c[4]) != cell.ReasonNone {
			t.Fatalf("took %d cells, want 3 queued, TEARDOWN, DESTROY none", n)
		}
	})
	// relayedQueue is a queue of a circuit this node relays: its cells
	// count against MaxQueuedCells and the memory budget.
	relayedQueue := func(l *link) *circQueue {
		q := l.newQueue(nil)
		q.charged = true
		return q
	}
	t.Run("fair share of the engine's relayed cells", func(t *testing.T) {
		t.Parallel()
		l := schedLink(func(lim *Limits) { lim.MaxQueuedCells = 100 })
		l.e.mem.limit = 1 << 30
		bulk, quiet := relayedQueue(l), relayedQueue(l)
		pushN(t, bulk, 100)
		// At the engine's limit the bulk circuit holds more than its
		// share (100 ÷ 2 active) ...
		pushN(t, quiet, 1)
		if err := bulk.push(l.e.pool.Get()); !errors.Is(err, errQueueFull) {
			t.Fatalf("bulk push past its share = %v, want errQueueFull", err)
		}
		// ... while the quiet one still gets its cells through.
		pushN(t, quiet, 10)
	})
	t.Run("own circuits are not shared out", func(t *testing.T) {
		t.Parallel()
		l := schedLink(func(lim *Limits) { lim.MaxQueuedCells = 100 })
		l.e.mem.limit = 1 << 30
		// This node's own circuits together hold three times the
		// limit: none is cut for it ...
		own1, own2 := l.newQueue(nil), l.newQueue(nil)
		pushN(t, own1, 150)
		pushN(t, own2, 150)
		// ... and their cells leave a relayed circuit the whole limit.
		relayed := relayedQueue(l)
		pushN(t, relayed, 100)
		if err := relayed.push(l.e.pool.Get()); !errors.Is(err, errQueueFull) {
			t.Fatalf("relayed push past the limit = %v, want errQueueFull", err)
		}
		pushN(t, own1, 1)
		if n := l.e.queued.Load(); n != 100 {
			t.Fatalf("engine counts %d queued cells, want the relayed circuit's 100", n)
		}
	})
	t.Run("circuits for others are shared out", func(t *testing.T) {
		t.Parallel()
		l := schedLink(func(lim *Limits) { lim.MaxQueuedCells = 100 })
		l.e.mem.limit = 1 << 30
		// An onion service's rendezvous circuits (Circuit.ForOthers),
		// marked after cells are queued: what they hold is counted ...
		svc1, svc2 := l.newQueue(nil), l.newQueue(nil)
		pushN(t, svc1, 60)
		svc1.share()
		svc2.share()
		svc2.share() // twice does nothing
		if n, a := l.e.queued.Load(), l.e.activeQueues.Load(); n != 60 || a != 1 {
			t.Fatalf("engine counts %d queued cells in %d queues, want 60 in 1", n, a)
		}
		if used := l.e.mem.used.Load(); used != 60*cellCost {
			t.Fatalf("memory budget holds %d, want %d", used, 60*cellCost)
		}
		pushN(t, svc2, 40)
		// ... and at the limit the larger is cut at its share
		// (100 ÷ 2 active), as a relayed circuit would be.
		if err := svc1.push(l.e.pool.Get()); !errors.Is(err, errQueueFull) {
			t.Fatalf("push past the fair share = %v, want errQueueFull", err)
		}
		pushN(t, svc2, 1)
		// Taking the cells gives back what they held.
		if got := len(takeIDs(l, 200)); got != 101 {
			t.Fatalf("took %d cells, want 101", got)
		}
		if n, a, used := l.e.queued.Load(), l.e.activeQueues.Load(), l.e.mem.used.Load(); n != 0 || a != 0 || used != 0 {
			t.Fatalf("after taking every cell: %d queued, %d active, %d bytes held; want 0", n, a, used)
		}
	})
}

func equalIDs(a, b []cell.CircID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestCellFIFO checks order across chunks and that an empty FIFO holds no
// chunk.
func TestCellFIFO(t *testing.T) {
	t.Parallel()
	l := schedLink(nil)
	var f cellFIFO
	cells := make([]*cell.Cell, 3*fifoChunkLen+5)
	for round := range 2 {
		for i := range cells {
			cells[i] = new(cell.Cell)
			f.push(&l.e.chunks, cells[i])
		}
		for i := range cells {
			if c := f.pop(&l.e.chunks); c != cells[i] {
				t.Fatalf("round %d: pop %d out of order", round, i)
			}
		}
		if f.pop(&l.e.chunks) != nil || f.head != nil || f.tail != nil || f.n != 0 {
			t.Fatalf("round %d: empty FIFO holds %d cells or a chunk", round, f.n)
		}
	}
}

// BenchmarkLinkQueue is one cell through a circuit queue and the
// scheduler: push, then take. It must not allocate.
func BenchmarkLinkQueue(b *testing.B) {
	l := schedLink(nil)
	qs := make([]*circQueue, 8)
	for i := range qs {
		qs[i] = l.newQueue(nil)
	}
	out := make([]*cell.Cell, writeBatch)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c := l.e.pool.Get()
		_ = qs[i%len(qs)].push(c)
		i++
		if i%writeBatch == 0 {
			n := l.take(out)
			for _, c := range out[:n] {
				l.e.pool.Put(c)
			}
		}
	}
}
