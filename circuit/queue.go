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

	// Guarded by l.smu.
	cells  cellFIFO
	pos    int     // index in l.heap, or -1 while the queue is empty
	ewma   float64 // cells sent recently, decayed; scaled to tick (sched.go)
	tick   int64   // EWMA tick ewma is scaled to
	closed bool    // its DESTROY is queued, or the link is down: take nothing more
}

func (l *link) newQueue(end circEnd) *circQueue {
	return &circQueue{l: l, end: end, pos: -1}
}

// push queues c for the link's writer, taking ownership of c either way.
// It fails with errQueueFull when the circuit has its maximum queued
// (callers destroy the circuit), and with errLinkClosed once the queue is
// closed.
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
	q.cells.push(&e.chunks, c)
	e.queued.Add(1)
	q.scheduleLocked()
	l.unlockWake()
	return nil
}

// roomLocked reports whether one more cell may be queued: below the
// per-circuit cap, and, once the engine holds MaxQueuedCells, below this
// circuit's fair share of them (so a flood is cut off first and an
// interactive circuit still gets its few cells through).
func (q *circQueue) roomLocked() bool {
	e := q.l.e
	lim := &e.cfg.Limits
	n := q.cells.n
	if n >= lim.MaxCircuitQueue {
		return false
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
		e.queued.Add(1)
	}
	q.cells.push(&e.chunks, d)
	e.queued.Add(1)
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
	e.queued.Add(-int64(n))
	q.l.unscheduleLocked(q)
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
