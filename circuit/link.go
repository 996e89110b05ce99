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

// errLinkClosed is returned by link.send after the link went down.
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

// link is one /co-infuse/link/1 stream to a neighbour (PROTOCOL.md §1.1).
// It has a reader and a writer goroutine, both owned by the engine's
// WaitGroup. Circuit IDs are chosen by the side that opened the stream.
type link struct {
	e        *Engine
	s        network.Stream
	peer     peer.ID
	outbound bool // we opened it, so we choose circuit IDs

	queue chan *cell.Cell // bounded send queue, drained by writeLoop
	done  chan struct{}   // closed when the link is down
	drain chan struct{}   // closed to make writeLoop flush and close
	wdone chan struct{}   // closed when writeLoop has returned
	once  sync.Once
	drOnc sync.Once

	lastUsed atomic.Int64 // unix nanos of the last cell either way
	draining atomic.Bool  // shutdown was called: take no new circuits

	mu     sync.Mutex // guards circs, nextID
	circs  map[cell.CircID]circEnd
	nextID uint32
}

func newLink(e *Engine, s network.Stream, outbound bool) *link {
	l := &link{
		e:        e,
		s:        s,
		peer:     s.Conn().RemotePeer(),
		outbound: outbound,
		queue:    make(chan *cell.Cell, e.cfg.Limits.MaxLinkQueue),
		done:     make(chan struct{}),
		drain:    make(chan struct{}),
		wdone:    make(chan struct{}),
		circs:    make(map[cell.CircID]circEnd),
	}
	l.lastUsed.Store(time.Now().UnixNano())
	return l
}

// start launches the reader and writer; the caller has done e.wg.Add(2).
func (l *link) start() {
	go l.readLoop()
	go l.writeLoop()
}

// send queues c for the writer, waiting while the queue is full. It takes
// ownership of c either way.
func (l *link) send(c *cell.Cell) error {
	select {
	case <-l.done:
		l.e.pool.Put(c)
		return errLinkClosed
	default:
	}
	select {
	case l.queue <- c:
		return nil
	case <-l.done:
		l.e.pool.Put(c)
		return errLinkClosed
	}
}

// sendDestroy queues a DESTROY for id.
func (l *link) sendDestroy(id cell.CircID, r cell.Reason) {
	c := l.e.pool.Get()
	c.SetCircID(id)
	c.SetCommand(cell.CmdDestroy)
	d := cell.Destroy{Reason: r}
	if err := d.MarshalBody(c.Body()); err != nil {
		l.e.pool.Put(c)
		return
	}
	_ = l.send(c)
}

// register adds end under a fresh circuit ID on an outbound link.
func (l *link) register(end circEnd) (cell.CircID, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.circs == nil || l.draining.Load() {
		return 0, errLinkClosed
	}
	for range 1 << 16 {
		l.nextID++
		if l.nextID == 0 {
			l.nextID = 1
		}
		id := cell.CircID(l.nextID)
		if _, ok := l.circs[id]; !ok {
			l.circs[id] = end
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: no free circuit id on link", ErrResourceLimit)
}

// registerID adds end under the peer-chosen id on an inbound link.
func (l *link) registerID(id cell.CircID, end circEnd) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.circs == nil || l.draining.Load() {
		return errLinkClosed
	}
	if _, ok := l.circs[id]; ok {
		return fmt.Errorf("%w: circuit id in use", ErrProtocol)
	}
	l.circs[id] = end
	return nil
}

// unregister removes id if it still maps to end.
func (l *link) unregister(id cell.CircID, end circEnd) {
	l.mu.Lock()
	if cur, ok := l.circs[id]; ok && cur == end {
		delete(l.circs, id)
		l.lastUsed.Store(time.Now().UnixNano())
	}
	l.mu.Unlock()
}

func (l *link) lookup(id cell.CircID) circEnd {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.circs[id]
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

// close takes the link down at once: the stream is reset and every
// circuit on it is told. Safe to call many times from any goroutine.
func (l *link) close(cause error) {
	l.once.Do(func() {
		close(l.done)
		_ = l.s.Reset()
		l.e.forgetLink(l)
		l.mu.Lock()
		circs := l.circs
		l.circs = nil
		l.mu.Unlock()
		if cause != nil && !errors.Is(cause, io.EOF) && !errors.Is(cause, errLinkClosed) {
			l.e.log.Debug("link closed", "peer", l.peer, "outbound", l.outbound, "err", cause)
		}
		for _, end := range circs {
			end.linkClosed(l)
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

// writeLoop batches queued cells through a bufio.Writer and flushes when
// the queue is empty.
func (l *link) writeLoop() {
	defer l.e.wg.Done()
	defer close(l.wdone)
	w := bufio.NewWriterSize(l.s, linkBufSize)
	timeout := l.e.cfg.Limits.WriteTimeout
	write := func(c *cell.Cell) error {
		_, err := w.Write(c[:])
		l.e.pool.Put(c)
		return err
	}
	for {
		var c *cell.Cell
		select {
		case c = <-l.queue:
		case <-l.done:
			return
		case <-l.drain:
			_ = l.s.SetWriteDeadline(time.Now().Add(timeout))
			for {
				select {
				case c = <-l.queue:
					if write(c) != nil {
						l.close(nil)
						return
					}
					continue
				default:
				}
				break
			}
			_ = w.Flush()
			_ = l.s.CloseWrite()
			return
		}
		_ = l.s.SetWriteDeadline(time.Now().Add(timeout))
		err := write(c)
	batch:
		for err == nil {
			select {
			case c = <-l.queue:
				err = write(c)
			default:
				break batch
			}
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			l.close(fmt.Errorf("link write: %w", err))
			return
		}
	}
}
