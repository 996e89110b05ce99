package discovery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

// TestGuardsWeekOf200Relays: 200 relays come and go (1%/h leave, 5%/h come
// back) for a week of simulated time; the client refreshes adverts every 3
// hours as its Finds would, its guards' adverts on their own schedule, and
// builds a path every hour, reporting a guard that does not answer. It must
// never fail a build and always hold at least three usable guards, within
// the sampled-set bound.
func TestGuardsWeekOf200Relays(t *testing.T) {
	t.Parallel()
	var clockMu sync.Mutex
	now := testEpoch
	clock := func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return now }
	h, _ := loopbackHost(t, nil)
	s, err := New(h, nil, Config{Logger: testLogger(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	const n = 200
	type relay struct {
		priv   crypto.PrivKey
		ad     Advert
		online bool
	}
	relays := make([]*relay, n)
	byID := map[peer.ID]*relay{}
	for i := range relays {
		roles := []Role{RoleRelay}
		if i%4 == 0 {
			roles = append(roles, RoleExit)
		}
		ad, priv := synthAdvert(t, 3000+i, fmt.Sprintf("%d.%d.0.1", 30+i/200, i%200), roles, nil)
		relays[i] = &relay{priv: priv, ad: ad, online: true}
		byID[ad.Peer] = relays[i]
	}
	seq := uint64(1)
	publish := func(r *relay) ([]byte, error) {
		seq++
		ad := r.ad.Clone()
		ad.Seq, ad.Expiry = seq, clock().Add(6*time.Hour)
		return SignAdvert(&ad, r.priv)
	}
	s.fetchAdvert = func(_ context.Context, ai peer.AddrInfo) (Advert, error) {
		r := byID[ai.ID]
		if r == nil || !r.online {
			return Advert{}, errors.New("relay offline")
		}
		env, err := publish(r)
		if err != nil {
			return Advert{}, err
		}
		return s.accept(env, ai.ID, nil)
	}
	rng := rand.New(rand.NewPCG(14, 14))
	ctx := context.Background()
	distinct := map[peer.ID]bool{}
	minUsable, maxSampled, reports := 1<<30, 0, 0
	for hour := 0; hour < 7*24; hour++ {
		clockMu.Lock()
		now = now.Add(time.Hour)
		clockMu.Unlock()
		for _, r := range relays {
			switch {
			case r.online && rng.Float64() < 0.01:
				r.online = false
			case !r.online && rng.Float64() < 0.05:
				r.online = true
			}
		}
		if hour%3 == 0 {
			for _, r := range relays {
				if r.online {
					_, _ = s.fetchAdvert(ctx, peer.AddrInfo{ID: r.ad.Peer})
				}
			}
		}
		s.refreshGuards(ctx)
		built := false
		for try := 0; try < 10 && !built; try++ {
			path, err := s.SelectPath(ctx, PathRequest{Final: RoleExit})
			if err != nil {
				t.Fatalf("hour %d: %v", hour, err)
			}
			g := path[0].Peer
			distinct[g] = true
			if !byID[g].online {
				s.Report(g, false) // the guard did not answer
				reports++
				continue
			}
			s.Report(g, true)
			built = true
		}
		if !built {
			t.Fatalf("hour %d: no working guard in 10 tries", hour)
		}
		s.mu.Lock()
		r := s.rules(clock())
		usable := len(s.usableGuardsLocked(s.snapshotLocked(clock()), &PathRequest{}, r))
		sampled := len(s.guards)
		s.mu.Unlock()
		minUsable, maxSampled = min(minUsable, usable), max(maxSampled, sampled)
	}
	t.Logf("a week, 200 relays: at least %d usable guards every hour, sampled set at most %d, %d guards used, %d unanswered guard reports",
		minUsable, maxSampled, len(distinct), reports)
	if minUsable < 3 {
		t.Fatalf("only %d usable guards at some hour", minUsable)
	}
	if maxSampled > maxSampledGuards {
		t.Fatalf("sampled set grew to %d", maxSampled)
	}
}
