package pool

import (
	"cmp"
	"slices"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Info describes one pooled circuit, for the admin API and tests.
type Info struct {
	ID uint64 `json:"id"`
	// Isolation is the key's username; never its password. Empty for a
	// clean circuit.
	Isolation string `json:"isolation"`
	// Path is the hops' peer IDs, first hop first.
	Path    []peer.ID `json:"path"`
	Streams int       `json:"streams"`
	// Port is the port the circuit was built for.
	Port uint16 `json:"port"`
	// Built is when it joined the pool.
	Built time.Time `json:"built"`
	// FirstUse is when Get first handed it out; zero if never.
	FirstUse time.Time `json:"first_use,omitzero"`
	// Dirty: it takes no new streams (MaxDirtiness since FirstUse).
	Dirty bool `json:"dirty"`
	// Clean: pre-built and not yet claimed by a key.
	Clean bool `json:"clean"`
	// Circuit is the circuit itself, for callers that read its counters
	// (HopBytes); the pool still owns it.
	Circuit *circuit.Circuit `json:"-"`
}

// Snapshot lists the open pooled circuits, ordered by ID. Builds in flight
// are not listed.
func (p *Pool) Snapshot() []Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.cfg.Now()
	out := make([]Info, 0, len(p.byCirc))
	for c, e := range p.byCirc {
		if c.Err() != nil {
			continue
		}
		info := Info{
			ID:       c.ID(),
			Streams:  c.NumStreams(),
			Port:     e.port,
			Built:    e.built,
			FirstUse: e.firstUse,
			Circuit:  c,
			Dirty:    p.dirty(e, now),
			Clean:    e.clean,
		}
		if !e.clean {
			info.Isolation = e.key.Username
		}
		for _, h := range c.Path() {
			info.Path = append(info.Path, h.Peer)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b Info) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// Stats counts the pool's work since New (counters) and what it holds now
// (gauges), for tests, benchmarks and the admin API.
type Stats struct {
	// Built counts circuits built and pooled, on demand or ahead.
	Built uint64
	// OnDemand counts builds started for a Get that found no circuit: a
	// build on a stream's critical path.
	OnDemand uint64
	// Preemptive counts pre-builds started.
	Preemptive uint64
	// Claims counts Gets served by a pre-built circuit.
	Claims uint64
	// Failed counts builds, of either kind, that ended without a circuit.
	Failed uint64

	// Isolated is the number of circuits held for keys, dirty ones included.
	Isolated int
	// Clean is the number of pre-built circuits waiting to be claimed.
	Clean int
	// Building is the number of builds in flight, of either kind.
	Building int
}

// Stats returns the pool's counters and gauges.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Isolated, s.Clean = p.nkeyed, len(p.clean)
	s.Building = len(p.building) + len(p.prebuilding)
	return s
}
