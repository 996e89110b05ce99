package discovery

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// synthPool builds n candidates; the first n/3 are the "group". sameNet puts
// the group in 10.1.0.0/16, sameFam makes it one declared family. Every
// fourth node is also an exit allowing ports 1-65535 (every group node too).
func synthPool(t testing.TB, n int, sameNet, sameFam bool) (pool []*candidate, group map[peer.ID]bool) {
	t.Helper()
	g := n / 3
	ids := make([]peer.ID, n)
	for i := range ids {
		_, ids[i] = testKey(t, fmt.Sprintf("synth-%d", i))
	}
	group = map[peer.ID]bool{}
	for i := 0; i < n; i++ {
		ip := fmt.Sprintf("%d.%d.7.%d", 20+i/200, i%200, 1+i%250)
		var fam []peer.ID
		roles := []Role{RoleRelay}
		if i < g {
			group[ids[i]] = true
			if sameNet {
				ip = fmt.Sprintf("10.1.%d.%d", i/250, 1+i%250)
			}
			if sameFam {
				for j := 0; j < g && len(fam) < MaxFamily; j++ {
					if j != i {
						fam = append(fam, ids[j])
					}
				}
			}
			roles = append(roles, RoleExit)
		} else if i%4 == 0 {
			roles = append(roles, RoleExit)
		}
		ad, _ := synthAdvert(t, i, ip, roles, fam)
		c := newCandidate(&ad, nil, true)
		c.firstSeen = testEpoch.Add(-time.Duration(i%30) * 24 * time.Hour)
		c.ok = uint32(i % 7)
		pool = append(pool, c)
	}
	return pool, group
}

// TestPathNeverTwoFromOneGroup is the property test of the selection code:
// over 1,500 paths among adverts where a third of the nodes share one /16
// and/or one family, no path has two hops from that group.
func TestPathNeverTwoFromOneGroup(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name             string
		sameNet, sameFam bool
	}{
		{"same /16 and family", true, true},
		{"same /16 only", true, false},
		{"same family only", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, group := synthPool(t, 96, tc.sameNet, tc.sameFam)
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			r := &selectRules{now: testEpoch, failBackoff: time.Minute, ageRamp: DefaultAgeRamp}
			groupHits := 0
			for i := 0; i < 1500; i++ {
				guards := pickGuards(rng, pool, nil, 3, PathRequest{}, r)
				req := PathRequest{Hops: 2 + i%4, Final: []Role{RoleExit, RoleRelay}[i%2], Port: uint16(1 + i%60000)}
				path, err := pickPath(rng, pool, guards, req, r)
				if err != nil {
					t.Fatalf("selection %d: %v", i, err)
				}
				if len(path) != req.Hops {
					t.Fatalf("path of %d hops, want %d", len(path), req.Hops)
				}
				if !slices.Contains(guards, path[0]) {
					t.Fatal("first hop is not a guard")
				}
				if !path[len(path)-1].ad.HasRole(req.Final) {
					t.Fatal("last hop lacks the final role")
				}
				n := 0
				seen := map[peer.ID]bool{}
				for _, c := range path {
					if seen[c.ad.Peer] {
						t.Fatal("peer twice in a path")
					}
					seen[c.ad.Peer] = true
					if group[c.ad.Peer] {
						n++
					}
				}
				if n > 1 {
					t.Fatalf("selection %d: %d hops from the shared group", i, n)
				}
				groupHits += n
			}
			if groupHits == 0 {
				t.Fatal("the group was never selected at all; the test proves nothing")
			}
		})
	}
}

func TestPathRules(t *testing.T) {
	t.Parallel()
	pool, _ := synthPool(t, 30, false, false)
	r := &selectRules{now: testEpoch, failBackoff: time.Hour, ageRamp: DefaultAgeRamp}
	t.Run("exit must allow port", func(t *testing.T) {
		narrow := pool[0]
		ad := narrow.ad.Clone()
		ad.ExitPorts = []PortRange{{8333, 8333}}
		narrow = newCandidate(&ad, nil, true)
		p2 := append([]*candidate{narrow}, pool[1:]...)
		for _, c := range p2[1:] {
			if c.ad.HasRole(RoleExit) {
				a := c.ad.Clone()
				a.Roles = []Role{RoleRelay}
				delete(a.Prices, RoleExit)
				c.ad = &a
			}
		}
		rng := rand.New(rand.NewPCG(2, 2))
		guards := pickGuards(rng, p2, nil, 3, PathRequest{}, r)
		for i := 0; i < 50; i++ {
			path, err := pickPath(rng, p2, guards, PathRequest{Final: RoleExit, Port: 8333}, r)
			if err != nil {
				t.Fatal(err)
			}
			if path[2].ad.Peer != narrow.ad.Peer {
				t.Fatal("wrong exit")
			}
		}
		if _, err := pickPath(rng, p2, guards, PathRequest{Final: RoleExit, Port: 443}, r); err == nil {
			t.Fatal("found an exit for a port no policy allows")
		}
	})
	t.Run("price cap and failures", func(t *testing.T) {
		failed := pool[5]
		failed = newCandidate(failed.ad, nil, true)
		failed.fail, failed.lastFail = 1, testEpoch.Add(-time.Minute)
		p2 := slices.Clone(pool)
		p2[5] = failed
		rng := rand.New(rand.NewPCG(3, 3))
		guards := pickGuards(rng, p2, nil, 3, PathRequest{MaxPriceSat: 15}, r)
		for i := 0; i < 300; i++ {
			req := PathRequest{Hops: 3, MaxPriceSat: 15}
			path, err := pickPath(rng, p2, guards, req, r)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range path {
				if c.ad.Peer == failed.ad.Peer {
					t.Fatal("recently failed node chosen")
				}
				if c.ad.Price(RoleRelay) > 15 {
					t.Fatal("hop over the price cap chosen")
				}
			}
		}
	})
	t.Run("excluded and expired never chosen", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(4, 4))
		late := &selectRules{now: testEpoch.Add(2 * time.Hour), failBackoff: time.Hour}
		if _, err := pickPath(rng, pool, nil, PathRequest{Hops: 1}, late); err == nil {
			t.Fatal("selected among expired adverts")
		}
		ex := []peer.ID{pool[1].ad.Peer, pool[2].ad.Peer}
		guards := pickGuards(rng, pool, nil, 3, PathRequest{Exclude: ex}, r)
		for i := 0; i < 200; i++ {
			path, err := pickPath(rng, pool, guards, PathRequest{Exclude: ex}, r)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range path {
				if slices.Contains(ex, c.ad.Peer) {
					t.Fatal("excluded peer chosen")
				}
			}
		}
	})
}

func TestGroupOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		same bool
	}{
		{"/ip4/10.1.2.3/tcp/1", "/ip4/10.1.200.9/udp/2/quic-v1", true},
		{"/ip4/10.1.2.3/tcp/1", "/ip4/10.2.2.3/tcp/1", false},
		{"/ip6/2001:db8:1::1/tcp/1", "/ip6/2001:db8:ffff::2/tcp/1", true},
		{"/ip6/2001:db8::1/tcp/1", "/ip6/2001:db9::1/tcp/1", false},
		{"/ip6/::ffff:10.1.2.3/tcp/1", "/ip4/10.1.9.9/tcp/1", true},
	}
	for _, tc := range tests {
		t.Run(tc.a+" "+tc.b, func(t *testing.T) {
			t.Parallel()
			ga, ok1 := groupOf(ma.StringCast(tc.a), true)
			gb, ok2 := groupOf(ma.StringCast(tc.b), true)
			if !ok1 || !ok2 || (ga == gb) != tc.same {
				t.Fatalf("groups %v %v (ok %v %v), same=%v", ga, gb, ok1, ok2, tc.same)
			}
		})
	}
	if _, ok := groupOf(ma.StringCast("/dns4/example.invalid/tcp/1"), true); ok {
		t.Fatal("dns address has a group")
	}
}

// TestWeightSplitUsesObservedNetwork: a node that advertises an address in
// an honest node's /16 does not dilute that node's weight; nodes really in
// one /16 (by the address we reached them on) share one node's weight.
func TestWeightSplitUsesObservedNetwork(t *testing.T) {
	t.Parallel()
	r := &selectRules{now: testEpoch, failBackoff: time.Minute}
	honestAd, _ := synthAdvert(t, 1, "50.1.0.1", []Role{RoleRelay}, nil)
	honest := newCandidate(&honestAd, ma.StringCast("/ip4/50.1.0.1/tcp/4001"), true)
	pool := []*candidate{honest}
	for i := 0; i < 9; i++ {
		ad, _ := synthAdvert(t, 100+i, "60.1.0.1", []Role{RoleRelay}, nil)
		// Claims the honest node's /16 too, but lives in 60.1/16.
		ad.Addrs = append(ad.Addrs, ma.StringCast("/ip4/50.1.9.9/tcp/1"))
		ad.CapacityKBps = honestAd.CapacityKBps
		pool = append(pool, newCandidate(&ad, ma.StringCast("/ip4/60.1.0.2/tcp/4001"), true))
	}
	rng := rand.New(rand.NewPCG(5, 5))
	hits := 0
	const n = 4000
	for i := 0; i < n; i++ {
		if pickWeighted(rng, pool, posMiddle, &PathRequest{}, r, nil) == honest {
			hits++
		}
	}
	// Honest weight 1 against nine liars sharing one weight: about half.
	if hits < n*40/100 || hits > n*60/100 {
		t.Fatalf("honest node picked %d of %d times, want about half", hits, n)
	}
	// And the liars never share a path with it.
	if !conflicts(honest, pool[1], r) {
		t.Fatal("a node claiming the honest node's /16 may share its path")
	}
}

func TestSameFamily(t *testing.T) {
	t.Parallel()
	ids := make([]peer.ID, 4)
	for i := range ids {
		_, ids[i] = testKey(t, fmt.Sprintf("fam-%d", i))
	}
	mk := func(i int, fam ...int) *candidate {
		ad, _ := synthAdvert(t, i, "1.2.3.4", []Role{RoleRelay}, nil)
		ad.Peer = ids[i]
		for _, f := range fam {
			ad.Family = append(ad.Family, ids[f])
		}
		return newCandidate(&ad, nil, true)
	}
	tests := []struct {
		name string
		a, b *candidate
		want bool
	}{
		{"strangers", mk(0), mk(1), false},
		{"a lists b", mk(0, 1), mk(1), false},
		{"b lists a", mk(0), mk(1, 0), false},
		{"each lists the other", mk(0, 1, 3), mk(1, 0), true},
		{"both list a third", mk(0, 3, 2), mk(1, 2), false},
		{"disjoint families", mk(0, 2), mk(1, 3), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := sameFamily(tc.a, tc.b); got != tc.want {
				t.Fatalf("sameFamily = %v, want %v", got, tc.want)
			}
			if got := sameFamily(tc.b, tc.a); got != tc.want {
				t.Fatal("not symmetric")
			}
		})
	}
}
