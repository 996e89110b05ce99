package wallet

import (
	"math"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Buying ahead in proportion to use. A fixed TargetBalanceSat drains
// faster than the random refill rounds come when a node carries much: at
// 2 sat/MB an exit moving 50 MB/s spends 100 sats a second, and the gap
// between two rounds may be 4×AutoBuyInterval. A circuit that then finds
// no vouchers of its exit fails (nothing is bought while it waits). So
// the wallet remembers what it reserved at each node recently and, at the
// next round, buys enough to last the longest gap at that rate.
//
// What the node learns: a purchase already tops the balance up to the
// target, so its size tells the node how much was spent since the last
// one; a larger target adds no new kind of information. Purchases stay at
// the same random times.

// maxTargetFactor caps the use-sized target at this multiple of
// TargetBalanceSat. What use adds beyond TargetBalanceSat is also capped,
// per purchase, at a quarter of the daily budget left (topUp), so one
// busy node cannot take what the others need for the rest of the day.
const maxTargetFactor = 8

// use is a node's recent reservations, exponentially weighted.
type use struct {
	sats float64 // decayed sum of sats reserved
	at   time.Time
}

// useWindow is the decay time of recent use: the longest gap between two
// rounds of automatic purchase (refillDelay's cut).
func (c *Config) useWindow() time.Duration { return 4 * c.AutoBuyInterval }

// decayed returns u's sum as of now.
func (u use) decayed(now time.Time, window time.Duration) float64 {
	dt := now.Sub(u.at)
	if dt <= 0 || window <= 0 {
		return u.sats
	}
	return u.sats * math.Exp(-float64(dt)/float64(window))
}

// noteUse records that sats of node's vouchers were reserved at now.
// Entries that decayed below a sat are dropped; the map holds at most
// maxTrackedNodes nodes.
func (w *Wallet) noteUse(node peer.ID, sats uint64, now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	win := w.cfg.useWindow()
	u, ok := w.used[node]
	if !ok && len(w.used) >= maxTrackedNodes {
		for n, v := range w.used {
			if v.decayed(now, win) < 1 {
				delete(w.used, n)
			}
		}
		if len(w.used) >= maxTrackedNodes {
			return
		}
	}
	w.used[node] = use{sats: u.decayed(now, win) + float64(sats), at: now}
}

// refillLevels returns the balance automatic purchase keeps at node and
// the available balance below which it buys: TargetBalanceSat and
// RefillBelowSat, raised so that the balance lasts one window at the
// node's recent rate of use (target twice the recent use, refill below
// it), the target at most maxTargetFactor×TargetBalanceSat.
func (w *Wallet) refillLevels(node peer.ID, now time.Time) (target, below uint64) {
	w.mu.Lock()
	recent := w.used[node].decayed(now, w.cfg.useWindow())
	w.mu.Unlock()
	target, below = w.cfg.TargetBalanceSat, w.cfg.RefillBelowSat
	ceiling := maxTargetFactor * w.cfg.TargetBalanceSat
	need := uint64(math.Ceil(min(recent, float64(ceiling))))
	target = min(max(target, 2*need), ceiling)
	below = min(max(below, need), target)
	return target, below
}
