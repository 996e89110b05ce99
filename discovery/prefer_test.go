package discovery

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestPreferHeld: with PathRequest.Prefer naming a few nodes (the ones the
// wallet holds vouchers for), every middle and exit comes from them
// whenever one is usable, the first hop is still a guard, and a Prefer
// that names no usable node changes nothing (paths are still found).
func TestPreferHeld(t *testing.T) {
	t.Parallel()
	pool, _ := synthPool(t, 60, false, false)
	rng := rand.New(rand.NewPCG(7, 7))
	r := &selectRules{now: testEpoch, failBackoff: time.Minute, ageRamp: DefaultAgeRamp}
	guards := pickGuards(rng, pool, nil, 3, PathRequest{}, r)
	held := map[peer.ID]bool{}
	var heldExit, heldRelay int
	for _, c := range pool[30:] { // outside the guard-heavy front, two of each
		switch {
		case c.ad.HasRole(RoleExit) && heldExit < 2:
			held[c.ad.Peer] = true
			heldExit++
		case !c.ad.HasRole(RoleExit) && heldRelay < 2:
			held[c.ad.Peer] = true
			heldRelay++
		}
	}
	prefer := func(p peer.ID) bool { return held[p] }
	for i := 0; i < 300; i++ {
		path, err := pickPath(rng, pool, guards, PathRequest{Hops: 3, Final: RoleExit, Port: 443, Prefer: prefer}, r)
		if err != nil {
			t.Fatalf("path %d: %v", i, err)
		}
		if path[0] != guards[0] && path[0] != guards[1] && path[0] != guards[2] {
			t.Fatalf("path %d: first hop is not a guard", i)
		}
		for j, c := range path[1:] {
			if !held[c.ad.Peer] {
				t.Fatalf("path %d: hop %d is not a held node though held ones were usable", i, j+2)
			}
		}
	}
	none := func(peer.ID) bool { return false }
	if _, err := pickPath(rng, pool, guards, PathRequest{Hops: 3, Final: RoleExit, Port: 443, Prefer: none}, r); err != nil {
		t.Fatalf("Prefer naming nobody: %v", err)
	}
}
