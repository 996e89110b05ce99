package pool

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
)

// Pool hands out client circuits for streams (see the package doc for the
// rules). Create it with New, call Start to pre-build and sweep, Close to
// stop. All methods are safe for concurrent use.
type Pool struct {
	cfg Config
	log *slog.Logger

	ctx    context.Context // cancelled by Close; parent of every build
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine the pool starts

	// slots holds one token per build in flight; cap MaxBuilds.
	slots chan struct{}

	mu      sync.Mutex // guards everything below
	started bool
	closed  bool
	// refillPending: a delayed refill after a claim is scheduled.
	refillPending bool
	// keyed holds the circuits of each key, dirty ones included, in the
	// order they joined; nkeyed counts them (bounded by MaxIsolated, beyond
	// it only while circuits carry streams). A key leaves the map with its
	// last circuit.
	keyed  map[Key][]*entry
	nkeyed int
	// clean holds pre-built circuits nobody claimed; prebuilding holds the
	// ports of pre-builds in flight. len(clean)+len(prebuilding) ≤ Preemptive.
	clean       []*entry
	prebuilding []uint16
	// building holds the on-demand builds in flight, one per key and port;
	// bounded by the Gets waiting on them.
	building map[buildKey]*build
	// byCirc finds the entry of each pooled circuit (keyed and clean).
	byCirc map[*circuit.Circuit]*entry
	// predicted is the last use of each port streams asked for, at most
	// maxPredictedPorts, none older than predictWindow after a sweep.
	predicted map[uint16]time.Time
	// After a failed pre-build, none starts before retryAt; backoff is the
	// next pause.
	retryAt time.Time
	backoff time.Duration
	stats   Stats // counters only; gauges are filled in by Stats
}

// entry is one pooled circuit. Fields are guarded by Pool.mu.
type entry struct {
	circ  *circuit.Circuit
	path  Path
	port  uint16    // the port it was built for
	built time.Time // when it joined the pool
	// key is the key it serves; meaningless while clean.
	key   Key
	clean bool // pre-built, not yet claimed
	// firstUse is when Get first handed it out (zero before): dirtiness
	// counts from here. lastUse is the latest Get or StreamOpened.
	firstUse, lastUse time.Time
	// busy is the last time a sweep saw it carry a stream.
	busy     time.Time
	reported bool // Report(hop, true) done for its hops
}

// dirty reports whether e takes no new streams at now.
func (p *Pool) dirty(e *entry, now time.Time) bool {
	return !e.firstUse.IsZero() && now.Sub(e.firstUse) >= p.cfg.MaxDirtiness
}

// buildKey names an on-demand build: one per key and port at a time.
type buildKey struct {
	key  Key
	port uint16
}

// build is an on-demand build in flight. Gets for its key and port wait on
// done; when the last of them gives up, the build is cancelled.
type build struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int    // guarded by Pool.mu
	e       *entry // set before done is closed, on success
	err     error  // set before done is closed, on failure
}

// New checks cfg and returns a pool. It starts nothing: Get works at once
// (building on demand); Start adds pre-building and the sweep.
func New(cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Pool{
		cfg:       cfg,
		log:       cfg.Logger.With("subsys", "pool"),
		ctx:       ctx,
		cancel:    cancel,
		slots:     make(chan struct{}, cfg.MaxBuilds),
		keyed:     make(map[Key][]*entry),
		building:  make(map[buildKey]*build),
		byCirc:    make(map[*circuit.Circuit]*entry),
		predicted: make(map[uint16]time.Time),
	}, nil
}

// Start starts the sweep (dirty and idle circuits, expired predictions) and
// pre-building. Calling it again, or after Close, does nothing.
func (p *Pool) Start() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started || p.closed {
		return
	}
	p.started = true
	p.wg.Add(1)
	go p.sweepLoop()
	p.refillLocked(p.cfg.Now())
}

// Close cancels every build, waits for the pool's goroutines and closes
// every pooled circuit (their streams fail with circuit.ErrClosed). Get
// fails with ErrClosed afterwards. Safe to call twice.
func (p *Pool) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	victims := make([]*circuit.Circuit, 0, len(p.byCirc))
	for c := range p.byCirc {
		victims = append(victims, c)
	}
	p.keyed, p.nkeyed, p.clean = map[Key][]*entry{}, 0, nil
	p.byCirc = map[*circuit.Circuit]*entry{}
	p.mu.Unlock()
	closeAll(victims)
	return nil
}

// Get returns a circuit for a stream of key to port: an open circuit of the
// key that is not dirty and whose exit accepts port; else a clean
// pre-built circuit that accepts port, which then belongs to key; else a
// new circuit built for key and port. Concurrent Gets for one key and port
// share one build. Get counts as the circuit's use (dirtiness starts at its
// first use). The caller opens its stream on the circuit, then calls
// StreamOpened.
//
// Errors: ErrClosed after Close, or when Close ends the build Get waits
// for; an error wrapping circuit.ErrTimeout and ctx's error when ctx ends
// first; otherwise the build's error, shared by every Get that waited for
// it (it wraps Select's, Build's or Prepare's).
func (p *Pool) Get(ctx context.Context, key Key, port uint16) (*circuit.Circuit, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		now := p.cfg.Now()
		if p.notePortLocked(port, now) {
			p.refillLocked(now)
		}
		if e := p.pickLocked(key, port, now); e != nil {
			p.useLocked(e, now)
			p.mu.Unlock()
			return e.circ, nil
		}
		if e, victims := p.claimLocked(key, port, now); e != nil {
			p.mu.Unlock()
			closeAll(victims)
			return e.circ, nil
		}
		bk := buildKey{key, port}
		b := p.building[bk]
		if b == nil {
			b = p.startBuildLocked(bk)
		}
		b.waiters++
		p.mu.Unlock()

		select {
		case <-b.done:
		case <-ctx.Done():
			p.mu.Lock()
			if b.waiters--; b.waiters == 0 {
				// Nobody wants it any more: stop it, and let a later Get
				// start afresh rather than join a cancelled build.
				if p.building[bk] == b {
					delete(p.building, bk)
				}
				b.cancel()
			}
			p.mu.Unlock()
			return nil, fmt.Errorf("get circuit: %w: %w", circuit.ErrTimeout, ctx.Err())
		}
		if b.err != nil {
			return nil, b.err
		}
		p.mu.Lock()
		if e := b.e; p.byCirc[e.circ] == e && e.circ.Err() == nil {
			p.useLocked(e, p.cfg.Now())
			p.mu.Unlock()
			return e.circ, nil
		}
		// Evicted or torn down between the build and now: go round again.
		p.mu.Unlock()
	}
}

// pickLocked returns the best circuit key already has for port: open, not
// dirty, its exit accepting port; the most recently built if several. It
// forgets the key's circuits that were torn down.
func (p *Pool) pickLocked(key Key, port uint16, now time.Time) *entry {
	var best *entry
	for _, e := range slices.Clone(p.keyed[key]) {
		if e.circ.Err() != nil {
			p.forgetLocked(e)
			continue
		}
		if p.dirty(e, now) || !e.path.accepts(port) {
			continue
		}
		if best == nil || !e.built.Before(best.built) {
			best = e
		}
	}
	return best
}

// claimLocked moves a clean circuit whose exit accepts port to key and
// starts a refill. It returns the claimed entry (nil if none fits) and the
// circuits the cap evicted, for the caller to close after unlocking.
func (p *Pool) claimLocked(key Key, port uint16, now time.Time) (*entry, []*circuit.Circuit) {
	var got *entry
	for _, e := range slices.Clone(p.clean) {
		if e.circ.Err() != nil {
			p.forgetLocked(e)
			continue
		}
		if got == nil && e.path.accepts(port) {
			got = e
		}
	}
	if got == nil {
		return nil, nil
	}
	p.clean = slices.DeleteFunc(p.clean, func(e *entry) bool { return e == got })
	got.clean, got.key = false, key
	p.useLocked(got, now)
	victims := p.addKeyedLocked(got, now)
	p.stats.Claims++
	p.refillSoonLocked()
	return got, victims
}

// refillSoonLocked refills the clean set refillDelay after a claim, not at
// once: the handshakes of a new build would otherwise compete for the CPU
// with the stream that just claimed a circuit, on the critical path the
// pre-built circuit was there to clear. One delayed refill is pending at a
// time.
func (p *Pool) refillSoonLocked() {
	if p.refillPending || p.closed {
		return
	}
	p.refillPending = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTimer(refillDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-p.ctx.Done():
			return
		}
		p.mu.Lock()
		p.refillPending = false
		p.refillLocked(p.cfg.Now())
		p.mu.Unlock()
	}()
}

// useLocked records that e was handed out at now.
func (p *Pool) useLocked(e *entry, now time.Time) {
	if e.firstUse.IsZero() {
		e.firstUse = now
	}
	e.lastUse = now
}

// addKeyedLocked puts e among its key's circuits and enforces MaxIsolated:
// it returns the circuits it evicted (least recently used first; never e,
// one carrying a stream, or one handed out less than handoutGrace ago), to
// be closed by the caller after unlocking.
func (p *Pool) addKeyedLocked(e *entry, now time.Time) []*circuit.Circuit {
	p.keyed[e.key] = append(p.keyed[e.key], e)
	p.nkeyed++
	p.byCirc[e.circ] = e
	var victims []*circuit.Circuit
	for p.nkeyed > p.cfg.MaxIsolated {
		var lru *entry
		for _, es := range p.keyed {
			for _, o := range es {
				if o == e || now.Sub(o.lastUse) < handoutGrace ||
					o.circ.Err() == nil && o.circ.NumStreams() > 0 {
					continue
				}
				if lru == nil || lastActive(o).Before(lastActive(lru)) {
					lru = o
				}
			}
		}
		if lru == nil {
			break // every other circuit carries streams
		}
		p.forgetLocked(lru)
		victims = append(victims, lru.circ)
	}
	return victims
}

// lastActive is when e was last handed out, seen busy or built.
func lastActive(e *entry) time.Time {
	t := e.built
	if e.lastUse.After(t) {
		t = e.lastUse
	}
	if e.busy.After(t) {
		t = e.busy
	}
	return t
}

// forgetLocked removes e from the pool's tables (it does not close it).
// A circuit a hop tore down reports the hop at fault, if any
// (Config.Report(hop, false), blamedHop), so that paths avoid it for a
// while, as a failed build does.
func (p *Pool) forgetLocked(e *entry) {
	if p.byCirc[e.circ] != e {
		return
	}
	delete(p.byCirc, e.circ)
	if err := e.circ.Err(); err != nil && p.cfg.Report != nil {
		if bad, ok := blamedHop(err, e.path.Hops); ok {
			p.cfg.Report(bad, false)
		}
	}
	if e.clean {
		p.clean = slices.DeleteFunc(p.clean, func(o *entry) bool { return o == e })
		return
	}
	es := slices.DeleteFunc(p.keyed[e.key], func(o *entry) bool { return o == e })
	if len(es) == 0 {
		delete(p.keyed, e.key)
	} else {
		p.keyed[e.key] = es
	}
	p.nkeyed--
}

// StreamOpened tells the pool that a stream opened on c (a circuit Get
// returned): the first time for c, every hop of c is reported as working
// (Config.Report(hop, true)) — once per circuit, as a failed build blames
// once per build. It also counts as a use for idleness.
func (p *Pool) StreamOpened(c *circuit.Circuit) {
	p.mu.Lock()
	e := p.byCirc[c]
	if e != nil {
		e.lastUse = p.cfg.Now()
		if e.reported {
			p.mu.Unlock()
			return
		}
		e.reported = true
	}
	p.mu.Unlock()
	if p.cfg.Report == nil {
		return
	}
	for _, h := range c.Path() {
		p.cfg.Report(h.Peer, true)
	}
}

// closeAll closes cs; call it without holding Pool.mu (Close sends DESTROY).
func closeAll(cs []*circuit.Circuit) {
	for _, c := range cs {
		_ = c.Close()
	}
}
