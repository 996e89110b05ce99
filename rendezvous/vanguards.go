package rendezvous

import (
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
)

// Vanguards-lite (Tor proposal 333, written afresh): every circuit a
// service builds to a node the other side can choose (a client's
// rendezvous point) or that many clients touch (intro points, HSDirs) goes
// guard → one of a small fixed set of layer-2 vanguards → a fresh middle →
// that node. A client that makes the service build circuit after circuit
// to a rendezvous node it runs sees a fresh middle each time, and behind it
// only the few layer-2 nodes, never the guard: walking back to the guard
// needs one of the L2 nodes, which rotate only every 1-12 days (a
// randomised lifetime, so rotations do not line up across services).
//
// VanguardConfig tunes the set; zero fields take the defaults.
type VanguardConfig struct {
	// Count is the number of layer-2 vanguards. Default 4 (as Tor).
	Count int
	// MinLife and MaxLife bound each vanguard's lifetime, drawn as the
	// larger of two uniform draws in [MinLife, MaxLife]. Default 1 and 12
	// days.
	MinLife, MaxLife time.Duration
	// Off disables vanguards (the comparison in the simulation only).
	Off bool
}

func (c *VanguardConfig) defaults() {
	if c.Count == 0 {
		c.Count = 4
	}
	if c.MinLife == 0 {
		c.MinLife = 24 * time.Hour
	}
	if c.MaxLife == 0 {
		c.MaxLife = 12 * 24 * time.Hour
	}
}

type vanguard struct {
	hop   circuit.HopInfo
	until time.Time
}

// vanguardSet is the service's layer-2 set; safe for concurrent use.
type vanguardSet struct {
	cfg VanguardConfig
	mu  sync.Mutex // guards rng, set
	rng *rand.Rand
	set []vanguard
}

func newVanguardSet(cfg VanguardConfig, rng *rand.Rand) *vanguardSet {
	cfg.defaults()
	return &vanguardSet{cfg: cfg, rng: rng}
}

// pick returns the via hops for one service circuit: one vanguard, after
// dropping expired ones and refilling the set from candidates (uniformly,
// never one already in the set). It returns nil when vanguards are off or
// there is no candidate.
func (v *vanguardSet) pick(now time.Time, candidates []circuit.HopInfo) []circuit.HopInfo {
	if v.cfg.Off {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.set = slices.DeleteFunc(v.set, func(g vanguard) bool { return !now.Before(g.until) })
	var free []circuit.HopInfo
	if len(v.set) < v.cfg.Count {
		for _, c := range candidates {
			if !slices.ContainsFunc(v.set, func(g vanguard) bool { return g.hop.Peer == c.Peer }) {
				free = append(free, c)
			}
		}
	}
	for len(v.set) < v.cfg.Count && len(free) > 0 {
		i := v.rng.IntN(len(free))
		v.set = append(v.set, vanguard{hop: free[i], until: now.Add(v.lifetime())})
		free = slices.Delete(free, i, i+1)
	}
	if len(v.set) == 0 {
		return nil
	}
	return []circuit.HopInfo{v.set[v.rng.IntN(len(v.set))].hop}
}

func (v *vanguardSet) lifetime() time.Duration {
	span := int64(v.cfg.MaxLife - v.cfg.MinLife)
	if span <= 0 {
		return v.cfg.MinLife
	}
	return v.cfg.MinLife + time.Duration(max(v.rng.Int64N(span), v.rng.Int64N(span)))
}

// drop removes the vanguard on peer p (its circuit could not be built
// through it), so the next pick draws a replacement.
func (v *vanguardSet) drop(p circuit.HopInfo) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.set = slices.DeleteFunc(v.set, func(g vanguard) bool { return g.hop.Peer == p.Peer })
}
