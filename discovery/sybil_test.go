package discovery

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// sybilNet is 120 honest relays (distinct /16s, 30-90 days old, a record of
// successes, prices 10-30 sat/MB, every fourth an exit) plus 120 attacker
// nodes: relay+exit, price 1, claiming 1 GB/s, first seen attackerAge ago,
// in one /16 (oneNet) or each in its own.
func sybilNet(t testing.TB, oneNet bool, attackerAge time.Duration) (pool []*candidate, bad map[peer.ID]bool) {
	t.Helper()
	bad = map[peer.ID]bool{}
	for i := 0; i < 240; i++ {
		attacker := i >= 120
		ip := fmt.Sprintf("40.%d.0.1", i%120)
		roles := []Role{RoleRelay}
		if attacker {
			roles = append(roles, RoleExit)
			ip = fmt.Sprintf("41.%d.0.1", i%120)
			if oneNet {
				ip = fmt.Sprintf("66.6.%d.%d", i/200, 1+i%200)
			}
		} else if i%4 == 0 {
			roles = append(roles, RoleExit)
		}
		ad, _ := synthAdvert(t, 1000+i, ip, roles, nil)
		c := newCandidate(&ad, nil, true)
		if attacker {
			bad[ad.Peer] = true
			for _, r := range roles {
				ad.Prices[r] = 1
			}
			ad.CapacityKBps = 1 << 20
			c.firstSeen = testEpoch.Add(-attackerAge)
		} else {
			for _, r := range roles {
				ad.Prices[r] = uint64(10 + i%21)
			}
			c.firstSeen = testEpoch.Add(-time.Duration(30+i%60) * 24 * time.Hour)
			c.ok, c.fail = 20, 1
		}
		pool = append(pool, c)
	}
	return pool, bad
}

// naivePath picks 3 hops weighted by 1/price only, no guards, no network
// or family rule: the baseline the weighting is measured against.
func naivePath(rng *rand.Rand, pool []*candidate) []*candidate {
	var path []*candidate
	for len(path) < 3 {
		role := RoleRelay
		if len(path) == 2 {
			role = RoleExit
		}
		var sum float64
		var elig []*candidate
		for _, c := range pool {
			dup := false
			for _, p := range path {
				dup = dup || p == c
			}
			if !dup && c.ad.HasRole(role) {
				elig = append(elig, c)
				sum += 1 / float64(c.ad.Price(role))
			}
		}
		x := rng.Float64() * sum
		pick := elig[len(elig)-1]
		for _, c := range elig {
			x -= 1 / float64(c.ad.Price(role))
			if x < 0 {
				pick = c
				break
			}
		}
		path = append(path, pick)
	}
	return path
}

// sybilRates simulates clients each choosing 3 guards and one exit path and
// returns the share of paths whose guard, exit, and both are the attacker's.
func sybilRates(t testing.TB, pool []*candidate, bad map[peer.ID]bool, naive bool) (guard, exit, both float64) {
	t.Helper()
	const clients = 3000
	rng := rand.New(rand.NewPCG(7, 7))
	r := &selectRules{now: testEpoch, failBackoff: time.Minute, ageRamp: DefaultAgeRamp}
	var g, e, b int
	for i := 0; i < clients; i++ {
		var path []*candidate
		if naive {
			path = naivePath(rng, pool)
		} else {
			guards := pickGuards(rng, pool, nil, 3, PathRequest{}, r)
			var err error
			path, err = pickPath(rng, pool, guards, PathRequest{Final: RoleExit}, r)
			if err != nil {
				t.Fatal(err)
			}
		}
		gb, eb := bad[path[0].ad.Peer], bad[path[len(path)-1].ad.Peer]
		if gb {
			g++
		}
		if eb {
			e++
		}
		if gb && eb {
			b++
		}
	}
	return float64(g) / clients, float64(e) / clients, float64(b) / clients
}

// TestSybilEffect measures what 120 cheap attacker nodes (half the network)
// gain against 120 honest relays; the figures are quoted in
// docs/THREAT_MODEL.md. Run with -v to print them.
func TestSybilEffect(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		oneNet  bool
		age     time.Duration
		naive   bool
		maxBoth float64 // bound on guard-and-exit compromise
	}{
		{"naive cheapest-first, new attacker", false, 0, true, 1},
		{"co-infuse, attacker in one /16, new", true, 0, false, 0.01},
		{"co-infuse, attacker in one /16, 30 days old", true, 30 * 24 * time.Hour, false, 0.01},
		{"co-infuse, attacker in 120 /16s, new", false, 0, false, 0.03},
		{"co-infuse, attacker in 120 /16s, 30 days old", false, 30 * 24 * time.Hour, false, 0.6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, bad := sybilNet(t, tc.oneNet, tc.age)
			g, e, b := sybilRates(t, pool, bad, tc.naive)
			t.Logf("%-48s guard %5.1f%%  exit %5.1f%%  guard+exit %5.1f%%", tc.name, 100*g, 100*e, 100*b)
			if b > tc.maxBoth {
				t.Fatalf("guard+exit compromise %.3f above %.3f", b, tc.maxBoth)
			}
		})
	}
}

// stakeNet is the fresh-client network of issue 14: 120 honest relays in
// distinct /16s (every fourth an exit) and 120 attacker nodes in 120 other
// /16s, all first seen just now with no history (a fresh client). With
// staked, honest node i holds (1+i%20) M sat of effective stake on its own
// Lightning node and the attacker holds attackerShare of the honest total,
// spread evenly over its nodes, each on its own Lightning node. splitExit
// makes only every other attacker node an exit (the others relay only); the
// attacker otherwise offers exit on every node, as in the reproduction.
func stakeNet(t testing.TB, staked bool, attackerShare float64, splitExit bool) (pool []*candidate, bad map[peer.ID]bool) {
	t.Helper()
	bad = map[peer.ID]bool{}
	var honestTotal int64
	for i := 0; i < 120; i++ {
		honestTotal += int64(1+i%20) * 1_000_000
	}
	for i := 0; i < 240; i++ {
		attacker := i >= 120
		ip := fmt.Sprintf("40.%d.0.1", i%120)
		roles := []Role{RoleRelay}
		switch {
		case attacker:
			ip = fmt.Sprintf("41.%d.0.1", i%120)
			if !splitExit || i%2 == 0 {
				roles = append(roles, RoleExit)
			}
		case i%4 == 0:
			roles = append(roles, RoleExit)
		}
		ad, _ := synthAdvert(t, 1000+i, ip, roles, nil)
		c := newCandidate(&ad, nil, true)
		c.firstSeen = testEpoch // fresh client: everyone new, no history
		for _, r := range roles {
			ad.Prices[r] = uint64(10 + i%21)
		}
		if attacker {
			bad[ad.Peer] = true
			for _, r := range roles {
				ad.Prices[r] = 1
			}
			ad.CapacityKBps = 1 << 20
		}
		if staked {
			c.lnNode = fmt.Sprintf("ln-%d", i)
			if attacker {
				c.stakeSat = int64(attackerShare * float64(honestTotal) / 120)
			} else {
				c.stakeSat = int64(1+i%20) * 1_000_000
			}
		}
		pool = append(pool, c)
	}
	return pool, bad
}

// TestSybilFreshClientStake is issue 14's benchmark: the attacker runs as
// many nodes as the honest network, over 120 /16s; a fresh client (no age,
// no history) builds exit paths. Without stake the attacker's nodes weigh
// as much as honest ones; with stake, holding 10% of the honest stake, it
// holds guard and exit of at most 1% of paths. Figures are quoted in
// docs/THREAT_MODEL.md; run with -v to print them.
func TestSybilFreshClientStake(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		staked  bool
		share   float64
		split   bool
		maxBoth float64
	}{
		{"fresh client, no stake anywhere", false, 0, false, 1},
		{"fresh client, attacker 10% stake, all exits", true, 0.10, false, 0.01},
		{"fresh client, attacker 10% stake, half exits", true, 0.10, true, 0.015},
		{"fresh client, attacker 25% stake, half exits", true, 0.25, true, 0.07},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, bad := stakeNet(t, tc.staked, tc.share, tc.split)
			g, e, b := sybilRates(t, pool, bad, false)
			t.Logf("%-50s guard %5.1f%%  exit %5.1f%%  guard+exit %5.2f%%", tc.name, 100*g, 100*e, 100*b)
			if b > tc.maxBoth {
				t.Fatalf("guard+exit compromise %.4f above %.4f", b, tc.maxBoth)
			}
		})
	}
}
