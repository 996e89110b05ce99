package rendezvous

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
)

// guardSim runs the guard-discovery attack many times against one service
// each: an adversary who runs a fraction adv of the relays makes the
// service build connection after connection (one every interval) to a
// rendezvous point the adversary runs. It learns the service's guard when
// the hop right after the guard in the service's circuit is one of its
// relays (that relay sees the guard as its previous hop and the adversary's
// rendezvous point links the circuit to the service by timing). Without
// vanguards that hop is a fresh middle each time; with vanguards it is one
// of the service's layer-2 set (the vanguardSet code the Manager uses).
// It returns the share of services whose guard was exposed within conns
// connections, and the share of all connections that exposed it.
func guardSim(seed uint64, vanguards bool, relays int, adv float64, services, conns int, interval time.Duration) (exposedServices, exposedConns float64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	cands := make([]circuit.HopInfo, relays)
	bad := map[peer.ID]bool{}
	for i := range cands {
		cands[i].Peer = peer.ID(fmt.Sprintf("relay-%d", i))
		if float64(i) < adv*float64(relays) {
			bad[cands[i].Peer] = true
		}
	}
	var nExposedSvc, nExposedConn int
	for s := range services {
		// The guard is honest (else there is nothing to discover).
		guard := cands[int(adv*float64(relays))+rng.IntN(relays-int(adv*float64(relays)))]
		others := make([]circuit.HopInfo, 0, relays-1)
		for _, c := range cands {
			if c.Peer != guard.Peer {
				others = append(others, c)
			}
		}
		vg := newVanguardSet(VanguardConfig{Off: !vanguards}, rand.New(rand.NewPCG(seed, uint64(s)+2)))
		now := time.Unix(1_800_000_000, 0)
		exposed := false
		for range conns {
			now = now.Add(interval)
			var afterGuard peer.ID
			if via := vg.pick(now, others); len(via) > 0 {
				afterGuard = via[0].Peer
			} else {
				afterGuard = others[rng.IntN(len(others))].Peer
			}
			if bad[afterGuard] {
				nExposedConn++
				exposed = true
			}
		}
		if exposed {
			nExposedSvc++
		}
	}
	return float64(nExposedSvc) / float64(services), float64(nExposedConn) / float64(services*conns)
}

// TestVanguardsSimulation shows the guard discovery defence: with 5% of
// 500 relays hostile, a client that makes a service build 1,000
// rendezvous circuits in an afternoon exposes the guard of almost every
// service without vanguards, and only of those whose layer-2 set already
// held a hostile relay with vanguards (about 1-0.95^4 ≈ 19%), however many
// connections it makes; over a month the vanguard rotations expose more,
// at the pace of days, not connections.
func TestVanguardsSimulation(t *testing.T) {
	t.Parallel()
	const relays, adv, services = 500, 0.05, 400
	type row struct {
		name      string
		vanguards bool
		conns     int
		interval  time.Duration
		maxSvc    float64 // bound on exposed services
		minSvc    float64
	}
	rows := []row{
		{"no vanguards, 1000 conns in 4 h", false, 1000, 15 * time.Second, 1, 0.95},
		{"vanguards, 1000 conns in 4 h", true, 1000, 15 * time.Second, 0.30, 0},
		{"no vanguards, 30 conns in 4 h", false, 30, 8 * time.Minute, 1, 0.6},
		{"vanguards, 30 conns in 4 h", true, 30, 8 * time.Minute, 0.30, 0},
		{"vanguards, 3000 conns over 30 days", true, 3000, 30 * 24 * time.Hour / 3000, 0.8, 0},
	}
	for _, r := range rows {
		svc, conn := guardSim(42, r.vanguards, relays, adv, services, r.conns, r.interval)
		t.Logf("%-36s guard exposed for %5.1f%% of services, by %5.2f%% of connections", r.name, 100*svc, 100*conn)
		if svc > r.maxSvc || svc < r.minSvc {
			t.Errorf("%s: %.3f of services exposed, want %.2f..%.2f", r.name, svc, r.minSvc, r.maxSvc)
		}
	}
}
