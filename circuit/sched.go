package circuit

import (
	"math"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// The link scheduler picks, for each cell a link writes, the circuit with
// queued cells that has sent the fewest cells recently: an exponentially
// weighted moving average of cells sent, as Tor's circuitmux_ewma
// (PROTOCOL.md §1.2). A bulk circuit's average grows while an interactive
// one's stays near zero, so an interactive cell waits for at most the cells
// already being written, however much bulk data is queued; circuits that
// all want the link get equal shares.
//
// The average decays by half every ewmaHalfLife. To avoid touching every
// circuit as time passes, values are kept in ticks: a cell sent adds 1, and
// when the tick advances the scheduled circuits are scaled down together
// (their order does not change); an idle circuit is scaled when it is next
// scheduled.
const (
	// ewmaTick is the EWMA clock's resolution (Tor's is 10 s).
	ewmaTick = time.Second
	// ewmaHalfLife is Tor's CircuitPriorityHalflife (30 s in the consensus).
	ewmaHalfLife = 30 * time.Second
	// ewmaScale is the decay per tick: 0.5^(ewmaTick/ewmaHalfLife).
	ewmaScale = 0.9771599684342459
)

// writeBatch is the most cells the writer takes from the scheduler at
// once: one bufio buffer (linkBufSize). An interactive cell queued behind a
// batch waits for at most this much to be written.
const writeBatch = linkBufSize / cell.Size

// ewmaDecay returns the factor for ticks ticks of decay.
func ewmaDecay(ticks int64) float64 {
	switch {
	case ticks <= 0:
		return 1
	case ticks > 2000: // underflows to zero long before
		return 0
	}
	return math.Pow(ewmaScale, float64(ticks))
}

// scheduleLocked puts q on the link's schedule if it has cells and is not
// on it yet. Caller holds l.smu.
func (q *circQueue) scheduleLocked() {
	if q.pos >= 0 || q.cells.n == 0 {
		return
	}
	l := q.l
	q.ewma *= ewmaDecay(l.tick - q.tick)
	q.tick = l.tick
	q.pos = len(l.heap)
	l.heap = append(l.heap, q)
	l.siftUp(q.pos)
	if q.charged {
		l.e.activeQueues.Add(1)
	}
}

// unscheduleLocked takes q off the schedule. Caller holds l.smu.
func (l *link) unscheduleLocked(q *circQueue) {
	i := q.pos
	if i < 0 {
		return
	}
	last := len(l.heap) - 1
	l.swap(i, last)
	l.heap[last] = nil
	l.heap = l.heap[:last]
	q.pos = -1
	if i < last {
		l.siftDown(i)
		l.siftUp(i)
	}
	if q.charged {
		l.e.activeQueues.Add(-1)
	}
}

// take fills out with the next cells to write: link-level cells first, then
// one cell at a time from the circuit with the smallest EWMA. It returns
// how many it took.
func (l *link) take(out []*cell.Cell) int {
	now := time.Now().UnixNano() / int64(ewmaTick)
	e := l.e
	l.smu.Lock()
	defer l.smu.Unlock()
	if now != l.tick {
		f := ewmaDecay(now - l.tick)
		for _, q := range l.heap {
			q.ewma *= f
			q.tick = now
		}
		l.tick = now
	}
	n := 0
	for n < len(out) && l.ctrl.n > 0 {
		out[n] = l.ctrl.pop(&e.chunks)
		n++
	}
	if n > 0 && l.ctrlSpace != nil {
		close(l.ctrlSpace)
		l.ctrlSpace = nil
	}
	charged := 0 // cells of relayed circuits (circQueue.count)
	for n < len(out) && len(l.heap) > 0 {
		q := l.heap[0]
		out[n] = q.cells.pop(&e.chunks)
		n++
		if q.trace != nil {
			q.trace.taken(l, l.cellsOut.Load()+int64(n))
		}
		if q.charged {
			charged++
		}
		q.ewma++
		if q.cells.n == 0 {
			l.unscheduleLocked(q)
		} else {
			l.siftDown(0)
		}
	}
	l.cellsOut.Add(int64(n))
	if charged > 0 {
		e.queued.Add(-int64(charged))
		e.mem.release(int64(charged) * cellCost)
	}
	if n == 0 {
		l.idle = true
	}
	return n
}

// The schedule is a binary min-heap of queues by ewma; each queue knows
// its index (pos).

func (l *link) less(i, j int) bool { return l.heap[i].ewma < l.heap[j].ewma }

func (l *link) swap(i, j int) {
	h := l.heap
	h[i], h[j] = h[j], h[i]
	h[i].pos = i
	h[j].pos = j
}

func (l *link) siftUp(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !l.less(i, p) {
			return
		}
		l.swap(i, p)
		i = p
	}
}

func (l *link) siftDown(i int) {
	n := len(l.heap)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && l.less(r, c) {
			c = r
		}
		if !l.less(c, i) {
			return
		}
		l.swap(i, c)
		i = c
	}
}
