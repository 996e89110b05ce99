package discovery

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkOpenAdvert: parse and verify one full Ed25519-signed advert.
func BenchmarkOpenAdvert(b *testing.B) {
	priv, id := testKey(b, "bench")
	ad := sampleAdvert(b, id)
	env, err := SignAdvert(&ad, priv)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(env)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenAdvert(env, testEpoch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectPath: one 3-hop exit path among 1,000 candidates, a third
// of them in one /16 and family, with the network and family rules on.
func BenchmarkSelectPath(b *testing.B) {
	pool, _ := synthPool(b, 1000, true, true)
	rng := rand.New(rand.NewPCG(1, 1))
	r := &selectRules{now: testEpoch, failBackoff: time.Minute, ageRamp: DefaultAgeRamp}
	guards := pickGuards(rng, pool, nil, 3, PathRequest{}, r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pickPath(rng, pool, guards, PathRequest{Final: RoleExit, Port: 8333}, r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSelectPathStaked: one 3-hop exit path with the Service's rules
// on the staked benchmark network (120 honest and 120 attacker nodes
// staked, 1,000 unstaked Sybils), so the staked quorum, the unstaked bound
// and the family cap all run on every pick.
func BenchmarkSelectPathStaked(b *testing.B) {
	pool, _ := stakeNet(b, stakeNetSpec{staked: true, attackerShare: 0.10, exitFrac: 0.5, unstakedSybils: 1000})
	rng := rand.New(rand.NewPCG(1, 1))
	r := serviceRules()
	guards := pickGuards(rng, pool, nil, 3, PathRequest{}, r)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pickPath(rng, pool, guards, PathRequest{Final: RoleExit, Port: 8333}, r); err != nil {
			b.Fatal(err)
		}
	}
}
