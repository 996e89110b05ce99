package circuit

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Engine runs circuits over one libp2p host: it relays circuits for others
// (if it has an onion key) and builds circuits for its own use. Create it
// with New, then Start; Close tears everything down.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	pool *cell.Pool

	ctx    context.Context // cancelled by Close; parent of every hook ctx
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the engine starts

	bufs           sync.Pool    // *dataBuf for received stream data
	chunks         sync.Pool    // *fifoChunk for circuit queues (queue.go)
	queued         atomic.Int64 // cells in relayed circuits' queues, all links (MaxQueuedCells)
	activeQueues   atomic.Int64 // relayed circuits' queues holding cells, all links
	clock          atomic.Int64 // unix nanos, refreshed by the sweeper; for per-cell timestamps
	nStreams       atomic.Int64 // open streams, client and last-hop
	begins         atomic.Int64 // Begin and Resolve hook calls running (Limits.MaxPendingBegins)
	mem            memBudget    // Limits.MemoryBudget
	authFail       atomic.Int64 // cells that failed a layer's authentication
	createsLimited atomic.Int64 // CREATEs refused by the rate limits
	createsUnpaid  atomic.Int64 // CREATEs refused for payment

	// testTamper, if set by a test, sees every RELAY cell this engine is
	// about to forward (forward: toward the last hop) and may change it; if
	// it returns true the cell is sent twice.
	testTamper atomic.Pointer[func(c *cell.Cell, forward bool) (dup bool)]
	// testDestroyRecv, if set by a test, sees the reason of every DESTROY
	// this engine reads, and the neighbour it came from.
	testDestroyRecv atomic.Pointer[func(from peer.ID, r cell.Reason)]

	mu       sync.Mutex // guards everything below
	started  bool
	closed   bool
	out      map[peer.ID]*link // links we opened
	in       map[peer.ID]*link // links neighbours opened
	dials    map[peer.ID]*linkDial
	hops     map[*hop]struct{}
	perPeer  map[peer.ID]int // relayed circuits by previous hop
	creating int             // CREATEs in accept
	// createBuckets and createGlobal rate-limit CREATEs per neighbour and
	// in all (createlimit.go).
	createBuckets map[peer.ID]*tokenBucket
	createGlobal  tokenBucket
	circuits      map[*Circuit]struct{}
	pathRTTs      map[string]*pathRTT // by path, while a circuit uses it (congestion.go)
	sweepDone     chan struct{}
}

// cellPoolSize is the most idle cells an engine keeps for reuse (16 MiB):
// enough that a bulk circuit whose queues swell and drain by a few
// thousand cells at a time recycles them instead of allocating.
const cellPoolSize = 4096

// linkDial is an outbound link being opened; later callers wait on done.
type linkDial struct {
	done chan struct{}
	l    *link
	err  error
}

// Stats is a snapshot of what an Engine holds.
type Stats struct {
	RelayCircuits  int // circuits relayed as a hop
	ClientCircuits int // circuits built by this engine
	Links          int // open link streams, both directions
	Streams        int // open streams, client and last-hop
	// AuthFailures counts cells, since New, that failed a layer's
	// authentication or cookie check: tampering, replay or a broken peer.
	AuthFailures int64
	// PendingBegins is the number of Begin and Resolve hook calls running
	// (Limits.MaxPendingBegins).
	PendingBegins int
	// Memory is the bytes reserved against Limits.MemoryBudget.
	Memory int64
	// CreatesRateLimited counts CREATEs, since New, refused by the
	// per-neighbour or global CREATE rate limit (Limits), before any
	// public-key work.
	CreatesRateLimited int64
	// CreatesUnpaid counts CREATEs, since New, refused for payment: no
	// offer at a paid hop, or an offer the Prepay hook refused.
	CreatesUnpaid int64
}

// New returns an engine for cfg; it does nothing until Start.
func New(cfg Config) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Limits.setDefaults()
	lg := cfg.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		cfg:           cfg,
		log:           lg.With("subsys", "circuit"),
		pool:          cell.NewPool(cellPoolSize),
		ctx:           ctx,
		cancel:        cancel,
		out:           make(map[peer.ID]*link),
		in:            make(map[peer.ID]*link),
		dials:         make(map[peer.ID]*linkDial),
		hops:          make(map[*hop]struct{}),
		perPeer:       make(map[peer.ID]int),
		createBuckets: make(map[peer.ID]*tokenBucket),
		circuits:      make(map[*Circuit]struct{}),
	}
	e.mem.limit, e.mem.log = cfg.Limits.MemoryBudget, e.log
	e.clock.Store(time.Now().UnixNano())
	return e, nil
}

// Start registers the link protocol handler and starts the idle sweeper.
// Calling it again, or after Close, does nothing.
func (e *Engine) Start() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started || e.closed {
		return nil
	}
	e.started = true
	e.cfg.Host.SetStreamHandler(LinkProtocol, e.handleStream)
	e.sweepDone = make(chan struct{})
	e.wg.Add(1)
	go e.sweep()
	return nil
}

// Close destroys every circuit (DESTROY reason requested for our own,
// finished for relayed ones), flushes and closes every link and waits for
// every engine goroutine. It is safe to call more than once.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	started := e.started
	circs := make([]*Circuit, 0, len(e.circuits))
	for c := range e.circuits {
		circs = append(circs, c)
	}
	hops := make([]*hop, 0, len(e.hops))
	for h := range e.hops {
		hops = append(hops, h)
	}
	e.mu.Unlock()
	if started {
		e.cfg.Host.RemoveStreamHandler(LinkProtocol)
	}
	for _, c := range circs {
		c.closeWith(cell.ReasonRequested, false, true)
	}
	for _, h := range hops {
		h.destroy(cell.ReasonFinished, nil)
	}
	e.cancel()
	e.mu.Lock()
	links := make([]*link, 0, len(e.out)+len(e.in))
	for _, l := range e.out {
		links = append(links, l)
	}
	for _, l := range e.in {
		links = append(links, l)
	}
	e.mu.Unlock()
	for _, l := range links {
		l.shutdown()
	}
	for _, l := range links {
		<-l.wdone
		l.close(nil)
	}
	e.wg.Wait()
	return nil
}

// Stats returns current counts.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{
		RelayCircuits:      len(e.hops),
		ClientCircuits:     len(e.circuits),
		Links:              len(e.out) + len(e.in),
		Streams:            int(e.nStreams.Load()),
		AuthFailures:       e.authFail.Load(),
		PendingBegins:      int(e.begins.Load()),
		Memory:             e.mem.used.Load(),
		CreatesRateLimited: e.createsLimited.Load(),
		CreatesUnpaid:      e.createsUnpaid.Load(),
	}
}

// coarseNow returns the time, in unix nanos, of the last sweep (a quarter
// of the shortest timeout ago at most): cheap enough to stamp every cell,
// and fine for timeouts of seconds to minutes.
func (e *Engine) coarseNow() int64 { return e.clock.Load() }

// getBuf returns a buffer for one DATA cell's bytes.
func (e *Engine) getBuf() *dataBuf {
	if b, ok := e.bufs.Get().(*dataBuf); ok {
		return b
	}
	return new(dataBuf)
}

// putBuf recycles b; the caller must not use it again.
func (e *Engine) putBuf(b *dataBuf) { e.bufs.Put(b) }

// goTracked runs f on a goroutine owned by the engine, unless it is closed.
func (e *Engine) goTracked(f func()) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return false
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f()
	}()
	return true
}

// handleStream accepts an inbound link stream.
func (e *Engine) handleStream(s network.Stream) {
	p := s.Conn().RemotePeer()
	e.mu.Lock()
	if e.closed || len(e.out)+len(e.in) >= e.cfg.Limits.MaxLinks && e.in[p] == nil {
		e.mu.Unlock()
		_ = s.Reset()
		return
	}
	old := e.in[p]
	l := newLink(e, s, false)
	e.in[p] = l
	e.wg.Add(2)
	l.start()
	e.mu.Unlock()
	if old != nil {
		// The neighbour opened a new link; it has given up the old one.
		old.close(errors.New("replaced by a new link"))
	}
}

// forgetLink removes l from the engine's tables.
func (e *Engine) forgetLink(l *link) {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.in
	if l.outbound {
		m = e.out
	}
	if m[l.peer] == l {
		delete(m, l.peer)
	}
}

// linkTo returns the outbound link to pi.ID, opening it if needed.
// Concurrent callers for one peer share one dial.
func (e *Engine) linkTo(ctx context.Context, pi peer.AddrInfo) (*link, error) {
	if pi.ID == e.cfg.Host.ID() {
		return nil, fmt.Errorf("%w: link to self", ErrProtocol)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fmt.Errorf("engine: %w", ErrClosed)
	}
	if l := e.out[pi.ID]; l != nil && !l.isClosed() {
		e.mu.Unlock()
		return l, nil
	}
	if d := e.dials[pi.ID]; d != nil {
		e.mu.Unlock()
		select {
		case <-d.done:
			return d.l, d.err
		case <-ctx.Done():
			return nil, fmt.Errorf("open link: %w: %w", ErrTimeout, ctx.Err())
		}
	}
	if len(e.out)+len(e.in)+len(e.dials) >= e.cfg.Limits.MaxLinks {
		e.mu.Unlock()
		return nil, fmt.Errorf("open link: %w: too many links", ErrResourceLimit)
	}
	d := &linkDial{done: make(chan struct{})}
	e.dials[pi.ID] = d
	e.mu.Unlock()

	d.l, d.err = e.openLink(ctx, pi)
	e.mu.Lock()
	delete(e.dials, pi.ID)
	if d.err == nil && e.closed {
		_ = d.l.s.Reset()
		d.l, d.err = nil, fmt.Errorf("engine: %w", ErrClosed)
	}
	if d.err == nil {
		e.out[pi.ID] = d.l
		e.wg.Add(2)
		d.l.start()
	}
	e.mu.Unlock()
	close(d.done)
	return d.l, d.err
}

func (e *Engine) openLink(ctx context.Context, pi peer.AddrInfo) (*link, error) {
	if err := e.cfg.Host.Connect(ctx, pi); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect: %w: %w", ErrTimeout, err)
		}
		return nil, fmt.Errorf("connect: %w: %w", ErrUnreachable, err)
	}
	s, err := e.cfg.Host.NewStream(ctx, pi.ID, LinkProtocol)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("open link: %w: %w", ErrTimeout, err)
		}
		return nil, fmt.Errorf("open link: %w: %w", ErrUnreachable, err)
	}
	return newLink(e, s, true), nil
}

// newCircuitID returns a random non-zero ID, unique within the process
// with overwhelming probability and free of global state.
func newCircuitID() uint64 {
	var b [8]byte
	for {
		_, _ = rand.Read(b[:])
		if id := binary.BigEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}

// sweep destroys idle relayed circuits and circuits stuck extending, sends
// keep-alives on quiet client circuits, and closes idle links.
func (e *Engine) sweep() {
	defer e.wg.Done()
	lim := e.cfg.Limits
	every := min(lim.IdleTimeout, lim.ExtendTimeout, lim.KeepAlive) / 4
	every = max(every, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
			// Not the tick's own time: a late tick carries an old one.
			e.sweepOnce(time.Now())
		}
	}
}

func (e *Engine) sweepOnce(now time.Time) {
	lim := e.cfg.Limits
	// Stamps taken since the previous sweep equal its clock value, so
	// anything stamped at or after last was active, however long this
	// sweep was delayed.
	last := e.clock.Swap(now.UnixNano())
	idleBefore := min(now.Add(-lim.IdleTimeout).UnixNano(), last)
	var idle, stuck, expired []*hop
	var links []*link
	e.mu.Lock()
	for h := range e.hops {
		switch {
		case h.lastActive.Load() < idleBefore:
			idle = append(idle, h)
		case h.extendExpired(now):
			stuck = append(stuck, h)
		case h.mintOnlyExpired(now):
			expired = append(expired, h)
		}
	}
	// Every built client circuit is kept alive, streams or not: a client
	// may hold circuits ready before it needs them (circuit/pool's
	// pre-built circuits), and relays reap any circuit that carries no
	// cell for their IdleTimeout. One DROP per KeepAlive of silence.
	var quiet []*Circuit
	keepBefore := now.Add(-lim.KeepAlive).UnixNano()
	for c := range e.circuits {
		if c.built() && c.lastSent.Load() < keepBefore {
			quiet = append(quiet, c)
		}
	}
	for _, m := range []map[peer.ID]*link{e.out, e.in} {
		for _, l := range m {
			links = append(links, l)
		}
	}
	e.pruneCreateBucketsLocked(now)
	e.mu.Unlock()
	for _, h := range idle {
		h.destroy(cell.ReasonTimeout, nil)
	}
	for _, c := range quiet {
		// Keep-alive (PROTOCOL.md §3.4): an error means the circuit is
		// closing anyway.
		_ = c.sendToLast(cell.RelayDrop, 0, nil)
	}
	for _, h := range stuck {
		h.destroy(cell.ReasonTimeout, nil)
	}
	for _, h := range expired {
		h.destroy(cell.ReasonPayment, nil)
	}
	for _, l := range links {
		if l.lastUsed.Load() < idleBefore && l.numCircuits() == 0 {
			l.shutdown()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				<-l.wdone
				l.close(nil)
			}()
		}
	}
}
