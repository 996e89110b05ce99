package circuit

import (
	"fmt"
	"sync"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// errQueueFull is returned when a circuit's queue toward a link is at
// Limits.MaxCircuitQueue, or over its share of Limits.MaxQueuedCells. The
// circuit is destroyed with reason resource limit; the link stays
// (PROTOCOL.md §1.2).
var errQueueFull = fmt.Errorf("%w: circuit queue full", ErrResourceLimit)

// circQueue is one circuit's cells waiting for one link's writer, in the
// order they were sealed (PROTOCOL.md §1.2). A client circuit has one, a
// relayed circuit one toward each neighbour. Producers never block on it:
// push fails when the queue is full, and its circuit is destroyed.
type circQueue struct {
	l   *link
	end circEnd
	id  cell.CircID // set by link.register before the queue is shared
	// charged is set for a relayed circuit's queues (a hop's, toward
	// either neighbour): each of their cells holds cellCost of the
	// engine's memory budget while queued. A client circuit's own
	// queue is bounded by its window and not charged.
	charged bool

	// Guarded by l.smu.
	cells  cellFIFO
	pos    int     // index in l.heap, or -1 while the queue is empty
	ewma   float64 // cells sent recently, decayed; scaled to tick (sched.go)
	tick   int64   // EWMA tick ewma is scaled to
	closed bool    // its DESTROY is queued, or the link is down: take nothing more

	// trace, set by tests before the circuit carries data, records when
	// this queue's cells are queued and taken (trace.go).
	trace *cellTrace
}

func (l *link) newQueue(end circEnd) *circQueue {
	_, relayed := end.(*hop)
	return &circQueue{l: l, end: end, pos: -1, charged: relayed}
}

// push queues c for the link's writer, taking ownership of c either way.
// It fails with errQueueFull when the circuit has its maximum queued, or
// when a relayed circuit's cell does not fit the memory budget (callers
// destroy the circuit), and with errLinkClosed once the queue is closed.
// An empty queue always takes one cell, so a handshake reply or a CREATE
// toward the next hop is never refused.
func (q *circQueue) push(c *cell.Cell) error {
	l, e := q.l, q.l.e
	l.smu.Lock()
	if q.closed {
		l.smu.Unlock()
		e.pool.Put(c)
		return errLinkClosed
	}
	if !q.roomLocked() {
		l.smu.Unlock()
		e.pool.Put(c)
		return errQueueFull
	}
	if q.charged {
		if q.cells.n == 0 {
			e.mem.force(cellCost)
		} else if !e.mem.reserve(cellCost, useData) {
			l.smu.Unlock()
			e.pool.Put(c)
			return errQueueFull
		}
	}
	q.cells.push(&e.chunks, c)
	q.count(1)
	q.scheduleLocked()
	if q.trace != nil {
		q.trace.add(tracePush)
	}
	l.unlockWake()
	return nil
}

// reserve makes room for one cell that pushReserved will queue. It fails
// as push would, but before the caller seals the cell: a sealed cell that
// is then refused would leave a gap in its layer's counter, and the client
// would find every later cell on the circuit failing authentication. A
// control cell a hop originates (ctrl) may take the budget's overdraft
// (useCtrl, 1/ctrlOverdraft past the limit), so that a stream the budget
// ends still gets its END and the circuit its SENDMEs, but no further:
// past it the circuit is destroyed like one whose DATA does not fit. The
// queue's length caps apply too. Every successful reserve is followed by pushReserved or
// unreserve.
func (q *circQueue) reserve(ctrl bool) error {
	l, e := q.l, q.l.e
	l.smu.Lock()
	defer l.smu.Unlock()
	if q.closed {
		return errLinkClosed
	}
	if !q.roomLocked() {
		return errQueueFull
	}
	if q.charged {
		use := useData
		if ctrl {
			use = useCtrl
		}
		if q.cells.n == 0 {
			e.mem.force(cellCost)
		} else if !e.mem.reserve(cellCost, use) {
			return errQueueFull
		}
	}
	return nil
}

// unreserve gives back a reserve that will not be pushed.
func (q *circQueue) unreserve() {
	if q.charged {
		q.l.e.mem.release(cellCost)
	}
}

// pushReserved queues c, for which reserve succeeded, taking ownership
// of it. It fails only if the queue closed since.
func (q *circQueue) pushReserved(c *cell.Cell) error {
	l, e := q.l, q.l.e
	l.smu.Lock()
	if q.closed {
		l.smu.Unlock()
		q.unreserve()
		e.pool.Put(c)
		return errLinkClosed
	}
	q.cells.push(&e.chunks, c)
	q.count(1)
	q.scheduleLocked()
	if q.trace != nil {
		q.trace.add(tracePush)
	}
	l.unlockWake()
	return nil
}

// roomLocked reports whether one more cell may be queued: below the
// per-circuit cap, and, for a relayed circuit once the engine's relayed
// circuits hold MaxQueuedCells, below this circuit's fair share of them
// (so a flood is cut off first and an interactive circuit still gets its
// few cells through). A client circuit's own queue is bounded by its
// windows and the cap only: its cells are this node's own, and a node
// with many busy circuits of its own would otherwise destroy them itself
// (100 bulk circuits starting at once queue up to 100 × 2048 cells
// toward their first hop).
func (q *circQueue) roomLocked() bool {
	e := q.l.e
	lim := &e.cfg.Limits
	n := q.cells.n
	if n >= lim.MaxCircuitQueue {
		return false
	}
	if !q.charged {
		return true
	}
	if e.queued.Load() < int64(lim.MaxQueuedCells) {
		return true
	}
	return int64(n) < int64(lim.MaxQueuedCells)/max(e.activeQueues.Load(), 1)
}

// finish queues the circuit's last cells on this link and closes the
// queue. If keep is set and there is room, the cells already queued stay
// and tail (a sealed TEARDOWN, or nil) follows them; otherwise both are
// dropped. A DESTROY with reason r comes last. It reports whether tail
// was queued; it takes ownership of tail either way.
func (q *circQueue) finish(tail *cell.Cell, r cell.Reason, keep bool) bool {
	l, e := q.l, q.l.e
	d := e.pool.Get()
	d.SetCircID(q.id)
	d.SetCommand(cell.CmdDestroy)
	if err := (&cell.Destroy{Reason: r}).MarshalBody(d.Body()); err != nil {
		// Only our own reasons get here; a bad one is our bug.
		e.log.Error("destroy reason", "reason", r, "err", err)
		_ = (&cell.Destroy{Reason: cell.ReasonInternal}).MarshalBody(d.Body())
	}
	l.smu.Lock()
	if q.closed {
		l.smu.Unlock()
		e.pool.Put(d)
		e.pool.Put(tail)
		return false
	}
	q.closed = true
	if !keep || q.cells.n >= e.cfg.Limits.MaxCircuitQueue {
		q.dropLocked()
		e.pool.Put(tail)
		tail = nil
	}
	if tail != nil {
		q.cells.push(&e.chunks, tail)
		q.count(1)
		q.chargeLast()
	}
	q.cells.push(&e.chunks, d)
	q.count(1)
	q.chargeLast()
	q.scheduleLocked()
	l.unlockWake()
	return tail != nil
}

// drop closes the queue and frees its cells without sending anything: the
// neighbour already knows the circuit is gone.
func (q *circQueue) drop() {
	q.l.smu.Lock()
	q.closed = true
	q.dropLocked()
	q.l.smu.Unlock()
}

// dropLocked frees the queued cells and takes the queue off the schedule.
func (q *circQueue) dropLocked() {
	e := q.l.e
	n := 0
	for c := q.cells.pop(&e.chunks); c != nil; c = q.cells.pop(&e.chunks) {
		e.pool.Put(c)
		n++
	}
	q.count(-n)
	if q.charged {
		e.mem.release(int64(n) * cellCost)
	}
	q.l.unscheduleLocked(q)
}

// share makes a client circuit's queue count as a relayed circuit's from
// now on: its cells, those queued already included, are charged to the
// memory budget and to MaxQueuedCells, and it is cut at its fair share.
// For circuits that carry what others ask for (Circuit.ForOthers).
func (q *circQueue) share() {
	l, e := q.l, q.l.e
	l.smu.Lock()
	defer l.smu.Unlock()
	if q.charged {
		return
	}
	q.charged = true
	if n := q.cells.n; n > 0 {
		e.mem.force(int64(n) * cellCost)
		q.count(n)
	}
	if q.pos >= 0 {
		e.activeQueues.Add(1)
	}
}

// count adds n to the engine's count of relayed circuits' queued cells
// (MaxQueuedCells), if q is one of them. Caller holds l.smu.
func (q *circQueue) count(n int) {
	if q.charged {
		q.l.e.queued.Add(int64(n))
	}
}

// chargeLast charges a relayed circuit's last cells (TEARDOWN, DESTROY),
// which are queued whatever the budget says.
func (q *circQueue) chargeLast() {
	if q.charged {
		q.l.e.mem.force(cellCost)
	}
}

// queueLen returns the cells q holds (for tests and stats).
func (q *circQueue) queueLen() int {
	q.l.smu.Lock()
	defer q.l.smu.Unlock()
	return q.cells.n
}

// fifoChunkLen is the number of cells per chunk of a cellFIFO: 256 bytes
// of pointers, so an idle queue holds none and a busy one grows without
// copying.
const fifoChunkLen = 32

type fifoChunk struct {
	cells [fifoChunkLen]*cell.Cell
	next  *fifoChunk
}

// cellFIFO is a queue of cells in chunks taken from a pool; an empty FIFO
// holds no chunk. Its owner serialises calls.
type cellFIFO struct {
	head, tail *fifoChunk
	hi, ti     int // next pop index in head, next push index in tail
	n          int
}

func (f *cellFIFO) push(p *sync.Pool, c *cell.Cell) {
	if f.tail == nil || f.ti == fifoChunkLen {
		ch, _ := p.Get().(*fifoChunk)
		if ch == nil {
			ch = new(fifoChunk)
		}
		if f.tail == nil {
			f.head, f.hi = ch, 0
		} else {
			f.tail.next = ch
		}
		f.tail, f.ti = ch, 0
	}
	f.tail.cells[f.ti] = c
	f.ti++
	f.n++
}

// pop returns the oldest cell, or nil if f is empty.
func (f *cellFIFO) pop(p *sync.Pool) *cell.Cell {
	if f.n == 0 {
		return nil
	}
	h := f.head
	c := h.cells[f.hi]
	h.cells[f.hi] = nil
	f.hi++
	f.n--
	switch {
	case f.n == 0:
		// The last cell was in the tail chunk, so head == tail.
		f.head, f.tail, f.hi, f.ti = nil, nil, 0, 0
		p.Put(h)
	case f.hi == fifoChunkLen:
		f.head, f.hi = h.next, 0
		h.next = nil
		p.Put(h)
	}
	return c
}
