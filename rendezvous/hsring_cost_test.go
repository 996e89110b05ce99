package rendezvous

import (
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestHSDirPutCostBounded: whether an HSDir is responsible for a
// descriptor is checked before anything else of a put, against the whole
// discovery view (up to MaxKnown, 4096 nodes). Ranking the whole view for
// every put let anyone replay one signed descriptor, at no cost of its
// own, and make the HSDir hash and sort 2 x 4096 ranks per put (about
// 10 ms of CPU each, a hundred times its signature check). The verdict of
// an index is now kept while the view is, and the check stops counting
// once accept nodes rank before this one.
func TestHSDirPutCostBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	rng := mrand.New(mrand.NewPCG(7, 8))
	const n = 4096
	view := fakePeers(rng, n)

	// The costliest put to refuse: a descriptor this HSDir just misses
	// (next after the accept lowest of replica 0), which anyone who can
	// rank the view finds by trying keys, then replays.
	var (
		raw  []byte
		self peer.ID
	)
	for self == "" {
		k := testKey(t)
		var p uint64
		raw, p = testDescriptor(t, k, now)
		b, _ := BlindPublic(k.Public(), p, DefaultPeriodLen)
		if cand := HSDirOrder(view, b, p, DefaultPeriodLen, 0)[hsdirAcceptRank]; !IsResponsible(cand, view, b, p, DefaultPeriodLen, hsdirAcceptRank) {
			self = cand
		}
	}
	s := NewServer(ServerConfig{Now: func() time.Time { return now }, Self: self,
		HSDirView: func() []peer.ID { return view }})
	defer s.Close()
	const puts = 20
	before := hsdirRanks.Load()
	for i := range puts {
		c := serve(t, s, TargetDescPut, [cell.CookieLen]byte{byte(i)})
		go c.Write(appendFrame16(nil, raw))
		if st := status(t, c); st != statusNotResponsible {
			t.Fatalf("put %d: status %d, want %d", i, st, statusNotResponsible)
		}
	}
	if got := hsdirRanks.Load() - before; got > 2*n {
		t.Fatalf("%d puts of one descriptor computed %d ranks of a %d-node view (at most one check's %d)", puts, got, n, 2*n)
	}

	// Keys an attacker makes up: most are far from this HSDir, and the
	// check stops early for them.
	const keys = 50
	before = hsdirRanks.Load()
	for range keys {
		k := testKey(t)
		b, _ := BlindPublic(k.Public(), 9, DefaultPeriodLen)
		IsResponsible(self, view, b, 9, DefaultPeriodLen, hsdirAcceptRank)
	}
	if mean := (hsdirRanks.Load() - before) / keys; mean > n/4 {
		t.Fatalf("a random key costs %d ranks on average of a %d-node view", mean, n)
	}
}
