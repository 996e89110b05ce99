package rendezvous

import (
	"sync"
	"time"
)

// replayCache remembers up to max keys for ttl: seen reports (and records)
// whether a key was seen within its lifetime. When full, the oldest entry
// is forgotten first, so a flood can push keys out early but never grow
// memory; ttl is chosen longer than a key can be useful (an introduction's
// rendezvous wait, a descriptor period), so a key that matters is refused.
type replayCache struct {
	mu    sync.Mutex // guards all below
	max   int
	ttl   time.Duration
	keys  map[[32]byte]time.Time
	order [][32]byte // insertion order, ring of at most max
	head  int
}

func newReplayCache(max int, ttl time.Duration) *replayCache {
	return &replayCache{max: max, ttl: ttl, keys: make(map[[32]byte]time.Time, max)}
}

// seen reports whether k is still remembered; if not, it remembers it now.
func (r *replayCache) seen(k [32]byte, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t, ok := r.keys[k]; ok && now.Sub(t) < r.ttl {
		return true
	}
	if len(r.order) < r.max {
		r.order = append(r.order, k)
	} else {
		old := r.order[r.head]
		delete(r.keys, old) // the oldest goes first
		r.order[r.head] = k
		r.head = (r.head + 1) % r.max
	}
	r.keys[k] = now
	return false
}

// tokenBucket admits events at rate per second with bursts of burst.
type tokenBucket struct {
	mu     sync.Mutex // guards tokens, last
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

func newTokenBucket(rate float64, burst int, now time.Time) *tokenBucket {
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now}
}

// allow takes a token if one is there.
func (b *tokenBucket) allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if d := now.Sub(b.last).Seconds(); d > 0 {
		b.tokens = min(b.burst, b.tokens+d*b.rate)
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
