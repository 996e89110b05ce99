package discovery

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestStakedEnds: with StakedQuorum staked families fitting each end (a
// staked network), guards and final hops are always staked, even when
// Prefer (the wallet holds vouchers) names only unstaked nodes; middles
// still follow Prefer, so unstaked nodes keep serving. Without the rule the
// preferred unstaked exits take every exit.
func TestStakedEnds(t *testing.T) {
	t.Parallel()
	var pool []*candidate
	unstaked := map[peer.ID]bool{}
	// 0..9 relays, the even ones unstaked; 10..23 exits, 22 and 23
	// unstaked: 12 staked exits, 17 staked relays in all.
	for i := 0; i < 24; i++ {
		roles := []Role{RoleRelay}
		if i >= 10 {
			roles = append(roles, RoleExit)
		}
		ad, _ := synthAdvert(t, 3000+i, fmt.Sprintf("70.%d.0.1", i), roles, nil)
		c := newCandidate(&ad, nil, true)
		c.firstSeen = testEpoch
		if i < 10 && i%2 == 0 || i >= 22 {
			unstaked[ad.Peer] = true
		} else {
			c.lnNode, c.stakeSat = fmt.Sprintf("ln-%d", i), 10_000_000
		}
		pool = append(pool, c)
	}
	prefer := func(p peer.ID) bool { return unstaked[p] }
	req := PathRequest{Hops: 3, Final: RoleExit, Prefer: prefer}
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 300; i++ {
		guards := pickGuards(rng, pool, nil, 2, PathRequest{}, serviceRules())
		path, err := pickPath(rng, pool, guards, req, serviceRules())
		if err != nil {
			t.Fatalf("path %d: %v", i, err)
		}
		for _, g := range guards {
			if unstaked[g.ad.Peer] {
				t.Fatalf("path %d: unstaked guard though staked relays were usable", i)
			}
		}
		if unstaked[path[2].ad.Peer] {
			t.Fatalf("path %d: unstaked exit though staked exits were usable", i)
		}
		if !unstaked[path[1].ad.Peer] {
			t.Fatalf("path %d: middle ignores Prefer", i)
		}
	}
	// The rule off (before): the wallet's unstaked exits win every time.
	for i := 0; i < 50; i++ {
		guards := pickGuards(rng, pool, nil, 2, PathRequest{}, beforeEnds())
		path, err := pickPath(rng, pool, guards, req, beforeEnds())
		if err != nil {
			t.Fatalf("before, path %d: %v", i, err)
		}
		if !unstaked[path[2].ad.Peer] {
			t.Fatalf("before, path %d: exit is not the preferred unstaked one", i)
		}
	}
}
