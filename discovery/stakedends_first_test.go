package discovery

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
)

// firstStakerNet is a network where honest relays do not stake yet: 60
// unstaked honest relays in distinct /16s (20 of them exits), plus the
// attacker's nodes, each on its own Lightning node with stake sat of
// effective stake in its own /16; every other one is an exit (the first
// relay only, the second relay and exit, ...).
func firstStakerNet(t testing.TB, attackers int, stake int64) (pool []*candidate, bad map[peer.ID]bool) {
	t.Helper()
	bad = map[peer.ID]bool{}
	add := func(i int, roles []Role, ln string) {
		ad, _ := synthAdvert(t, 5000+i, fmt.Sprintf("71.%d.0.1", i), roles, nil)
		c := newCandidate(&ad, nil, true)
		c.firstSeen = testEpoch
		if ln != "" {
			c.lnNode, c.stakeSat = ln, stake
			bad[ad.Peer] = true
		}
		pool = append(pool, c)
	}
	for i := range 60 {
		roles := []Role{RoleRelay}
		if i < 20 {
			roles = append(roles, RoleExit)
		}
		add(i, roles, "")
	}
	for j := range attackers {
		roles := []Role{RoleRelay}
		if j%2 == 1 {
			roles = append(roles, RoleExit)
		}
		add(100+j, roles, fmt.Sprintf("ln-attacker-%d", j))
	}
	return pool, bad
}

// firstStakerCapture is the share of 1,000 fresh clients' exit paths whose
// guard and exit are both the attacker's, under r, from seed.
func firstStakerCapture(t testing.TB, pool []*candidate, bad map[peer.ID]bool, r *selectRules, seed uint64) float64 {
	t.Helper()
	const clients = 1000
	both := 0
	for i := range clients {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		guards := pickGuards(rng, pool, nil, 3, PathRequest{}, r)
		path, err := pickPath(rng, pool, guards, PathRequest{Hops: 3, Final: RoleExit}, r)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		if bad[path[0].ad.Peer] && bad[path[2].ad.Peer] {
			both++
		}
	}
	return float64(both) / clients
}

// TestStakedEndsFirstStaker measures the first operator to stake on a
// network where honest relays do not stake yet (60 unstaked relays, 20 of
// them exits), under the rules before the minimum stake, the staked quorum
// and the family cap ("before": any stake made a node staked, and staked
// ends applied with one staked candidate), and the Service's rules now
// ("after"), from the same seeds:
//   - two tiny stakers (one 20,000-sat channel funded a day ago each, 222
//     sat of effective stake): before, guard and exit of every path; after,
//     exactly what the same two nodes get unstaked (below MinStakeSat);
//   - two qualified stakers (MinStakeSat, and whales at StakeCapSat):
//     after, each holds at most FamilyMaxShare of the guard and of the exit
//     position (fewer than StakedQuorum families: no staked ends);
//   - StakedQuorum qualified stakers: the ends become staked-only, which
//     is the price of the ends on such a network (StakedQuorum identities
//     at MinStakeSat each).
//
// Figures quoted in docs/THREAT_MODEL.md ("Lightning stake") and
// DISCOVERY.md §7; run with -v to print them.
func TestStakedEndsFirstStaker(t *testing.T) {
	t.Parallel()
	_, tiny := effectiveStake([]StakeChannel{{CapacitySat: 20_000, FundingHeight: 1000}}, 1144)
	if tiny <= 0 || tiny >= MinStakeSat {
		t.Fatalf("a day-old 20,000-sat channel gives %d sat of effective stake, want some, below MinStakeSat", tiny)
	}
	oldEnds := beforeMinStake()
	oldEnds.stakedEnds = false
	t.Run("tiny stakers", func(t *testing.T) {
		t.Parallel()
		pool, bad := firstStakerNet(t, 2, tiny)
		plain, _ := firstStakerNet(t, 2, 0) // the same nodes, unstaked
		noEnds := firstStakerCapture(t, pool, bad, oldEnds, 7)
		before := firstStakerCapture(t, pool, bad, beforeMinStake(), 7)
		after := firstStakerCapture(t, pool, bad, serviceRules(), 7)
		fair := firstStakerCapture(t, plain, bad, serviceRules(), 7)
		t.Logf("two stakers of %d sat each, honest unstaked: guard and exit both theirs: before staked ends %.1f %%, before (staked ends, any stake) %.1f %%, after %.1f %% (the same nodes unstaked: %.1f %%)",
			tiny, 100*noEnds, 100*before, 100*after, 100*fair)
		if before != 1 || noEnds < 0.9 {
			t.Fatalf("before: %.3f and %.3f of paths captured, want all and over 0.9 (the documented figures)", before, noEnds)
		}
		if after != fair {
			t.Fatalf("after: %.3f of paths captured, want %.3f, what the same nodes get unstaked", after, fair)
		}
	})
	for _, stake := range []int64{MinStakeSat, StakeCapSat} {
		t.Run(fmt.Sprintf("two stakers of %d sat", stake), func(t *testing.T) {
			t.Parallel()
			pool, bad := firstStakerNet(t, 2, stake)
			before := firstStakerCapture(t, pool, bad, beforeMinStake(), 7)
			after := firstStakerCapture(t, pool, bad, serviceRules(), 7)
			r := serviceRules()
			for _, pos := range []struct {
				pos position
				req PathRequest
			}{{posGuard, PathRequest{Final: RoleRelay}}, {posFinal, PathRequest{Final: RoleExit}}} {
				var elig []*candidate
				for _, c := range pool {
					if c.usable(pos.pos.role(&pos.req), &pos.req, r) {
						elig = append(elig, c)
					}
				}
				w := positionWeights(elig, pos.pos, &pos.req, r)
				var sum float64
				for _, x := range w {
					sum += x
				}
				for i, c := range elig {
					if bad[c.ad.Peer] && w[i]/sum > FamilyMaxShare+1e-9 {
						t.Errorf("position %d: staker %s holds %.4f, above FamilyMaxShare", pos.pos, c.lnNode, w[i]/sum)
					}
				}
			}
			g, e, _ := endShares(pool, bad, r)
			t.Logf("two stakers of %d sat each, honest unstaked: guard and exit both theirs: before %.1f %%, after %.2f %% (exact: guard %.1f %% x exit %.1f %% = %.2f %%)",
				stake, 100*before, 100*after, 100*g, 100*e, 100*g*e)
			if before != 1 {
				t.Fatalf("before: %.3f of paths captured, want all", before)
			}
			if g*e > 2*FamilyMaxShare*FamilyMaxShare+1e-9 {
				t.Fatalf("after: exact capture %.4f above two families at the cap in the guard and one in the exit position", g*e)
			}
		})
	}
	t.Run("quorum of stakers", func(t *testing.T) {
		t.Parallel()
		for _, n := range []int{StakedQuorum - 1, StakedQuorum} {
			pool, bad := firstStakerNet(t, n, MinStakeSat)
			g, e, _ := endShares(pool, bad, serviceRules())
			t.Logf("%d stakers of %d sat each (one per /16, half exits), honest unstaked: guard %.1f %%, exit %.1f %%, both %.1f %% exact",
				n, MinStakeSat, 100*g, 100*e, 100*g*e)
			// Below the quorum in a position the attacker's families
			// hold at most the cap each there.
			exits := n / 2
			if e > float64(exits)*FamilyMaxShare+1e-9 {
				t.Errorf("%d staked exits hold %.4f of the exit position, above %d x FamilyMaxShare", exits, e, exits)
			}
			switch {
			case n < StakedQuorum && g > float64(n)*FamilyMaxShare+1e-9:
				t.Errorf("%d stakers hold %.4f of the guard position, above %d x FamilyMaxShare", n, g, n)
			case n >= StakedQuorum && g != 1:
				t.Errorf("%d stakers hold %.4f of the guard position, want all (staked ends: the documented price)", n, g)
			}
		}
	})
}
