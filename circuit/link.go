package circuit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// linkBufSize is the bufio size on each side of a link stream.
const linkBufSize = 16 * cell.Size

// errLinkClosed is returned by circQueue.push after the link went down.
var errLinkClosed = fmt.Errorf("%w: link closed", ErrClosed)

// circEnd is one circuit's presence on a link: a client circuit, or a hop
// (which sits on two links). The link reader hands it every CREATED, RELAY
// and DESTROY cell for its ID; ownership of the cell passes with the call.
type circEnd interface {
	handleCell(l *link, c *cell.Cell)
	// linkClosed tells the circuit the link is gone; it must not call back
	// into the link's circuit table.
	linkClosed(l *link)
}

var (
	_ circEnd = (*hop)(nil)
	_ circEnd = (*Circuit)(nil)
)

// link is one /co-infuse/link/2 stream to a neighbour (PROTOCOL.md §1.1).
// It has a reader and a writer goroutine, both owned by the engine's
// WaitGroup. Circuit IDs are chosen by the side that opened the stream.
//
// Sending never blocks a producer on the neighbour (§1.2): each circuit
// has its own bounded queue toward the link (circQueue), the writer picks
// among circuits with queued cells by EWMA (sched.go), and a circuit whose
// queue is full is destroyed, not the link. Only the link's own reader may
// wait, for room for link-level cells (DESTROY answers to refused CREATEs),
// and so only on its own neighbour.
type link struct {
	e        *Engine
	s        network.Stream
	peer     peer.ID
	outbound bool // we opened it, so we choose circuit IDs

	done  chan struct{} // closed when the link is down
	drain chan struct{} // closed to make writeLoop flush and close
	wdone chan struct{} // closed when writeLoop has returned
	wake  chan struct{} // one token: there are cells for the writer
	once  sync.Once
	drOnc sync.Once

	lastUsed atomic.Int64 // unix nanos of the last cell either way
	// cellsOut counts cells the writer handed to the stream, cellsIn
	// cells the reader read from it (for tests: what sits between the two
	// ends of a link).
	cellsOut atomic.Int64
	cellsIn  atomic.Int64
	// rBuffered and wBuffered are the bytes the reader's and the
	// writer's bufio held when each last touched them (for benchmarks:
	// how much of what is between the two ends sits in our own buffers
	// rather than in yamux, the secure channel and the kernel).
	rBuffered atomic.Int64
	wBuffered atomic.Int64
	// traceAt, set by tests, is the number (cellsIn) of a traced cell
	// this reader should record reading in trace (trace.go).
	traceAt  atomic.Int64
	trace    atomic.Pointer[cellTrace]
	draining atomic.Bool // shutdown was called: take no new circuits

	mu     sync.Mutex // guards circs, nextID
	circs  map[cell.CircID]*circQueue
	nextID uint32

	// The send side: guarded by smu, as is every circQueue of this link.
	smu       sync.Mutex
	heap      []*circQueue  // queues with cells, by ewma (sched.go)
	tick      int64         // EWMA tick the heap is scaled to
	ctrl      cellFIFO      // link-level cells, at most Limits.MaxLinkQueue
	ctrlSpace chan struct{} // closed when the writer takes ctrl cells; nil if nobody waits
	idle      bool          // the writer found nothing and waits for wake
	sclosed   bool          // the link is down: queue nothing
}

func newLink(e *Engine, s network.Stream, outbound bool) *link {
	l := &link{
		e:        e,
		s:        s,
		peer:     s.Conn().RemotePeer(),
		outbound: outbound,
		done:     make(chan struct{}),
		drain:    make(chan struct{}),
		wdone:    make(chan struct{}),
		wake:     make(chan struct{}, 1),
		circs:    make(map[cell.CircID]*circQueue),
		tick:     time.Now().UnixNano() / int64(ewmaTick),
	}
	l.lastUsed.Store(time.Now().UnixNano())
	return l
}

// start launches the reader and writer; the caller has done e.wg.Add(2).
func (l *link) start() {
	go l.readLoop()
	go l.writeLoop()
}

// unlockWake releases l.smu, which the caller holds after queueing a
// cell, and wakes the writer if it was idle.
func (l *link) unlockWake() {
	kick := l.idle
	l.idle = false
	l.smu.Unlock()
	if kick {
		l.kick()
	}
}

// kick wakes the writer.
func (l *link) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// sendCtrl queues a link-level cell (one that belongs to no circuit),
// taking ownership of c. Only the link's own reader calls it: when
// MaxLinkQueue such cells wait, it waits for the writer, so a neighbour
// that floods CREATEs without reading the answers stalls only itself, and
// loses the link after the write timeout.
func (l *link) sendCtrl(c *cell.Cell) {
	for {
		l.smu.Lock()
		if l.sclosed {
			l.smu.Unlock()
			l.e.pool.Put(c)
			return
		}
		if l.ctrl.n < l.e.cfg.Limits.MaxLinkQueue {
			l.ctrl.push(&l.e.chunks, c)
			l.unlockWake()
			return
		}
		if l.ctrlSpace == nil {
			l.ctrlSpace = make(chan struct{})
		}
		ch := l.ctrlSpace
		l.smu.Unlock()
		select {
		case <-ch:
		case <-l.done:
			l.e.pool.Put(c)
			return
		}
	}
}

// sendDestroy queues a DESTROY for id, a circuit the link does not carry
// (a refused CREATE). Only the link's reader calls it.
func (l *link) sendDestroy(id cell.CircID, r cell.Reason) {
	c := l.e.pool.Get()
	c.SetCircID(id)
	c.SetCommand(cell.CmdDestroy)
	d := cell.Destroy{Reason: r}
	if err := d.MarshalBody(c.Body()); err != nil {
		l.e.pool.Put(c)
		return
	}
	l.sendCtrl(c)
}

// register adds q under a fresh circuit ID on an outbound link and sets
// q.id.
func (l *link) register(q *circQueue) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.circs == nil || l.draining.Load() {
		return errLinkClosed
	}
	for range 1 << 16 {
		l.nextID++
		if l.nextID == 0 {
			l.nextID = 1
		}
		id := cell.CircID(l.nextID)
		if _, ok := l.circs[id]; !ok {
			q.id = id
			l.circs[id] = q
			return nil
		}
	}
	return fmt.Errorf("%w: no free circuit id on link", ErrResourceLimit)
}

// registerID adds q under the peer-chosen id on an inbound link.
func (l *link) registerID(id cell.CircID, q *circQueue) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.circs == nil || l.draining.Load() {
		return errLinkClosed
	}
	if _, ok := l.circs[id]; ok {
		return fmt.Errorf("%w: circuit id in use", ErrProtocol)
	}
	q.id = id
	l.circs[id] = q
	return nil
}

// unregister removes q from the circuit table if it is still there; cells
// for its ID are dropped from then on. Its queued cells stay for the
// writer.
func (l *link) unregister(q *circQueue) {
	l.mu.Lock()
	if cur, ok := l.circs[q.id]; ok && cur == q {
		delete(l.circs, q.id)
		l.lastUsed.Store(time.Now().UnixNano())
	}
	l.mu.Unlock()
}

func (l *link) lookup(id cell.CircID) circEnd {
	l.mu.Lock()
	defer l.mu.Unlock()
	if q := l.circs[id]; q != nil {
		return q.end
	}
	return nil
}

func (l *link) numCircuits() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.circs)
}

func (l *link) isClosed() bool {
	if l.draining.Load() {
		return true
	}
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// close takes the link down at once: the stream is reset, every queued
// cell freed and every circuit on it told. Safe to call many times from
// any goroutine.
func (l *link) close(cause error) {
	l.once.Do(func() {
		close(l.done)
		_ = l.s.Reset()
		l.e.forgetLink(l)
		l.mu.Lock()
		circs := l.circs
		l.circs = nil
		l.mu.Unlock()
		l.smu.Lock()
		l.sclosed = true
		for len(l.heap) > 0 {
			q := l.heap[0]
			q.closed = true
			q.dropLocked()
		}
		for _, q := range circs {
			q.closed = true
		}
		for c := l.ctrl.pop(&l.e.chunks); c != nil; c = l.ctrl.pop(&l.e.chunks) {
			l.e.pool.Put(c)
		}
		l.smu.Unlock()
		if cause != nil && !errors.Is(cause, io.EOF) && !errors.Is(cause, errLinkClosed) {
			l.e.log.Debug("link closed", "peer", l.peer, "outbound", l.outbound, "err", cause)
		}
		for _, q := range circs {
			q.end.linkClosed(l)
		}
	})
}

// shutdown makes the writer send what is queued, then close the stream.
func (l *link) shutdown() {
	l.draining.Store(true)
	l.drOnc.Do(func() { close(l.drain) })
}

// readLoop reads whole cells and dispatches them (PROTOCOL.md §1.1, §2).
// Any read error, partial cell or unknown command closes the link.
func (l *link) readLoop() {
	defer l.e.wg.Done()
	r := bufio.NewReaderSize(l.s, linkBufSize)
	for {
		c := l.e.pool.Get()
		if _, err := io.ReadFull(r, c[:]); err != nil {
			l.e.pool.Put(c)
			l.close(err)
			return
		}
		l.lastUsed.Store(l.e.coarseNow())
		l.rBuffered.Store(int64(r.Buffered()))
		if n := l.cellsIn.Add(1); n == l.traceAt.Load() {
			if t := l.trace.Load(); t != nil {
				t.add(traceRead)
			}
		}
		switch cmd := c.Command(); cmd {
		case cell.CmdPadding:
			l.e.pool.Put(c)
		case cell.CmdCreate:
			if l.outbound {
				// Only the opener of a link picks circuit IDs (§1.1).
				id := c.CircID()
				l.e.pool.Put(c)
				l.sendDestroy(id, cell.ReasonProtocol)
				continue
			}
			l.e.handleCreate(l, c)
		case cell.CmdCreated, cell.CmdRelay, cell.CmdDestroy:
			if cmd == cell.CmdDestroy {
				if f := l.e.testDestroyRecv.Load(); f != nil {
					(*f)(l.peer, parseDestroy(c))
				}
			}
			end := l.lookup(c.CircID())
			if end == nil {
				// Late cell for a circuit already torn down.
				l.e.pool.Put(c)
				continue
			}
			end.handleCell(l, c)
		default:
			l.e.pool.Put(c)
			l.close(fmt.Errorf("%w: unknown link command %d", ErrProtocol, cmd))
			return
		}
	}
}

// writeLoop writes the cells the scheduler picks through a bufio.Writer,
// flushing when there are none left. Every write to the stream must make
// progress within the write timeout, or the link is closed (§1.1): a
// neighbour that stops reading loses the link, one that reads slowly only
// slows its own circuits.
func (l *link) writeLoop() {
	defer l.e.wg.Done()
	defer close(l.wdone)
	w := bufio.NewWriterSize(&deadlineWriter{s: l.s, timeout: l.e.cfg.Limits.WriteTimeout}, linkBufSize)
	var batch [writeBatch]*cell.Cell
	write := func(n int) error {
		var err error
		for i, c := range batch[:n] {
			if err == nil {
				_, err = w.Write(c[:])
			}
			l.e.pool.Put(c)
			batch[i] = nil
		}
		l.wBuffered.Store(int64(w.Buffered()))
		return err
	}
	for {
		if n := l.take(batch[:]); n > 0 {
			if err := write(n); err != nil {
				l.close(fmt.Errorf("link write: %w", err))
				return
			}
			continue
		}
		if err := w.Flush(); err != nil {
			l.close(fmt.Errorf("link write: %w", err))
			return
		}
		l.wBuffered.Store(0)
		select {
		case <-l.wake:
		case <-l.done:
			return
		case <-l.drain:
			for {
				n := l.take(batch[:])
				if n == 0 {
					break
				}
				if write(n) != nil {
					l.close(nil)
					return
				}
			}
			_ = w.Flush()
			_ = l.s.CloseWrite()
			return
		}
	}
}

// deadlineWriter sets the write deadline before each write to the stream,
// so that the timeout bounds a lack of progress, not a batch's duration.
type deadlineWriter struct {
	s       network.Stream
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	_ = w.s.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.s.Write(p)
}
