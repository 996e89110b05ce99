package circuit

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// tokenBucket admits events at rate per second with bursts of up to size.
// Not safe for concurrent use: the engine guards its buckets with its mu.
type tokenBucket struct {
	tokens float64
	at     time.Time
}

// take refills the bucket for the time since it was last used and takes a
// token; false when it is empty.
func (b *tokenBucket) take(now time.Time, rate float64, size int) bool {
	if b.at.IsZero() {
		b.tokens, b.at = float64(size), now
	}
	if el := now.Sub(b.at); el > 0 {
		b.tokens = min(float64(size), b.tokens+rate*el.Seconds())
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// full reports whether the bucket would be full at now.
func (b *tokenBucket) full(now time.Time, rate float64, size int) bool {
	return b.tokens+rate*now.Sub(b.at).Seconds() >= float64(size)
}

// admitCreateLocked takes a token from the neighbour's CREATE bucket and
// then from the global one (Limits.CreatesPerPeerPerSecond,
// CreatesPerSecond; PROTOCOL.md §4.4); false refuses the CREATE. A
// neighbour refused by its own bucket takes nothing from the global one,
// so one flooding neighbour cannot starve the others. e.mu must be held.
// The per-neighbour map has an entry only for neighbours with a link;
// sweepOnce drops the others once their buckets are full again.
func (e *Engine) admitCreateLocked(from peer.ID, now time.Time) bool {
	lim := e.cfg.Limits
	b := e.createBuckets[from]
	if b == nil {
		b = &tokenBucket{}
		e.createBuckets[from] = b
	}
	if !b.take(now, lim.CreatesPerPeerPerSecond, lim.CreateBurstPerPeer) {
		return false
	}
	return e.createGlobal.take(now, lim.CreatesPerSecond, lim.CreateBurst)
}

// pruneCreateBucketsLocked drops the buckets of neighbours with no link
// whose buckets have refilled. e.mu must be held.
func (e *Engine) pruneCreateBucketsLocked(now time.Time) {
	lim := e.cfg.Limits
	for p, b := range e.createBuckets {
		if e.in[p] == nil && e.out[p] == nil && b.full(now, lim.CreatesPerPeerPerSecond, lim.CreateBurstPerPeer) {
			delete(e.createBuckets, p)
		}
	}
}
