package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/proxy"
)

// pool keeps one client circuit per isolation key. bitcoind's
// -proxyrandomize and lnd's tor.streamisolation send a fresh SOCKS
// username/password pair per connection and rely on each pair getting its own
// circuit; a pair that comes back reuses its circuit while it lives.
type pool struct {
	build func(ctx context.Context, port uint16) (*circuit.Circuit, error)
	max   int
	now   func() time.Time

	mu sync.Mutex
	// entries is guarded by mu; bounded by max (least recently used closed).
	entries map[proxy.Isolation]*poolEntry
}

type poolEntry struct {
	iso  proxy.Isolation
	used time.Time // guarded by pool.mu
	// ready is closed when building ends; circ and err are set before.
	ready chan struct{}
	circ  *circuit.Circuit
	err   error
}

func newPool(max int, build func(ctx context.Context, port uint16) (*circuit.Circuit, error)) *pool {
	return &pool{build: build, max: max, now: time.Now, entries: make(map[proxy.Isolation]*poolEntry)}
}

// get returns the live circuit for iso, building one if there is none. Only
// one build per key runs at a time; concurrent callers wait for it.
func (p *pool) get(ctx context.Context, iso proxy.Isolation, port uint16) (*circuit.Circuit, error) {
	for {
		p.mu.Lock()
		e, ok := p.entries[iso]
		if ok {
			e.used = p.now()
			p.mu.Unlock()
			select {
			case <-e.ready:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if e.err == nil && e.circ.Err() == nil {
				return e.circ, nil
			}
			p.drop(iso, e)
			if e.err != nil {
				return nil, e.err
			}
			continue // dead circuit: build a fresh one
		}
		e = &poolEntry{iso: iso, used: p.now(), ready: make(chan struct{})}
		p.entries[iso] = e
		victim := p.evictLocked()
		p.mu.Unlock()
		if victim != nil {
			victim.Close()
		}
		e.circ, e.err = p.build(ctx, port)
		if e.err != nil {
			e.err = fmt.Errorf("build circuit: %w", e.err)
		}
		close(e.ready)
		if e.err != nil {
			p.drop(iso, e)
			return nil, e.err
		}
		return e.circ, nil
	}
}

// evictLocked removes the least recently used finished entry with no open
// stream when the pool is over its cap, and returns its circuit for the
// caller to close outside the lock. Circuits carrying streams are never
// evicted (that would cut a user's connection); the cap is then exceeded
// until they finish, which the front ends' connection limit bounds.
func (p *pool) evictLocked() *circuit.Circuit {
	if len(p.entries) <= p.max {
		return nil
	}
	var oldest *poolEntry
	for _, e := range p.entries {
		select {
		case <-e.ready:
		default:
			continue // still building
		}
		if e.circ != nil && e.circ.Err() == nil && e.circ.NumStreams() > 0 {
			continue
		}
		if oldest == nil || e.used.Before(oldest.used) {
			oldest = e
		}
	}
	if oldest == nil {
		return nil
	}
	delete(p.entries, oldest.iso)
	return oldest.circ
}

// drop forgets e if it is still the entry for iso.
func (p *pool) drop(iso proxy.Isolation, e *poolEntry) {
	p.mu.Lock()
	if p.entries[iso] == e {
		delete(p.entries, iso)
	}
	p.mu.Unlock()
}

// closeIdle closes circuits that carried no stream for idle.
func (p *pool) closeIdle(idle time.Duration) {
	cutoff := p.now().Add(-idle)
	var victims []*circuit.Circuit
	p.mu.Lock()
	for iso, e := range p.entries {
		select {
		case <-e.ready:
		default:
			continue
		}
		if e.circ != nil && e.used.Before(cutoff) && e.circ.NumStreams() == 0 {
			delete(p.entries, iso)
			victims = append(victims, e.circ)
		}
	}
	p.mu.Unlock()
	for _, c := range victims {
		c.Close()
	}
}

// CircuitInfo describes one client circuit for the admin API and tests.
type CircuitInfo struct {
	ID        uint64   `json:"id"`
	Isolation string   `json:"isolation"` // username only; never the password
	Path      []string `json:"path"`      // peer IDs, first hop first
	Streams   int      `json:"streams"`
}

func (p *pool) snapshot() []CircuitInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []CircuitInfo
	for iso, e := range p.entries {
		select {
		case <-e.ready:
		default:
			continue
		}
		if e.circ == nil {
			continue
		}
		info := CircuitInfo{ID: e.circ.ID(), Isolation: iso.Username, Streams: e.circ.NumStreams()}
		for _, h := range e.circ.Path() {
			info.Path = append(info.Path, h.Peer.String())
		}
		out = append(out, info)
	}
	return out
}

// closeAll closes every circuit; used at shutdown.
func (p *pool) closeAll() {
	p.mu.Lock()
	entries := p.entries
	p.entries = make(map[proxy.Isolation]*poolEntry)
	p.mu.Unlock()
	for _, e := range entries {
		<-e.ready
		if e.circ != nil {
			e.circ.Close()
		}
	}
}
