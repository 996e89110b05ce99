package rendezvous

import (
	"bytes"
	mrand "math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
)

// TestHSDirEligible: a node is ranked once the observer has known it for
// HSDirMinAge, or at once if the observer found it while bootstrapping.
func TestHSDirEligible(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := since.Add(30 * 24 * time.Hour)
	for _, tc := range []struct {
		name      string
		firstSeen time.Time
		want      bool
	}{
		{"found at bootstrap", since, true},
		{"found at the end of the bootstrap slack", since.Add(HSDirBootstrapSlack), true},
		{"found just after the slack, long ago", since.Add(HSDirBootstrapSlack + time.Second), true},
		{"joined a day ago", now.Add(-HSDirMinAge), true},
		{"joined a second short of a day ago", now.Add(-HSDirMinAge + time.Second), false},
		{"joined an hour ago", now.Add(-time.Hour), false},
		{"first seen in the future (clock step)", now.Add(time.Hour), false},
	} {
		if got := HSDirEligible(tc.firstSeen, since, now); got != tc.want {
			t.Errorf("%s: eligible %v, want %v", tc.name, got, tc.want)
		}
	}
	// An observer that has just started ranks everything it found.
	fresh := now.Add(-10 * time.Minute)
	if !HSDirEligible(now.Add(-5*time.Minute), fresh, now) {
		t.Error("a node found while bootstrapping was gated")
	}
}

// ageView is the HSDir view of an observer whose records begin at since:
// all nodes, each first seen at joined[p] or at since if it joined
// earlier, gated.
func ageView(all []peer.ID, joined map[peer.ID]time.Time, self peer.ID, since, now time.Time) []peer.ID {
	hops := make([]circuit.HopInfo, len(all))
	first := make(map[peer.ID]time.Time, len(all))
	for i, p := range all {
		hops[i] = circuit.HopInfo{Peer: p}
		first[p] = since
		if j, ok := joined[p]; ok && j.After(since) {
			first[p] = j
		}
	}
	var out []peer.ID
	for _, h := range GateHSDirView(hops, self, first, since, now) {
		out = append(out, h.Peer)
	}
	return out
}

// grind returns n peer IDs, out of tries random ones, that rank lowest
// for replica r of b in period: what an attacker who knows the address
// computes ahead of the period.
func grind(rng *mrand.Rand, b []byte, period uint64, r uint8, n, tries int) []peer.ID {
	cands := fakePeers(rng, tries)
	slices.SortFunc(cands, func(x, y peer.ID) int {
		rx, ry := hsdirRank(b, period, DefaultPeriodLen, r, x), hsdirRank(b, period, DefaultPeriodLen, r, y)
		return bytes.Compare(rx[:], ry[:])
	})
	return cands[:n]
}

// TestHSDirAgeGateGrinding: an attacker grinds hsdirAcceptRank IDs per
// replica that rank lowest for a service's next period and starts them an
// hour before it. Without the gate they are every HSDir the service
// stores on and every one a client asks first; with it, a service and a
// client that have run for a week rank none of them, and the HSDirs the
// service chose accept its upload. A client that has only just started
// cannot tell new nodes from old and is not protected: every HSDir it
// may ask is the attacker's (logged; such a client is left with the DHT
// provider records the honest HSDirs announce). Once the nodes have been
// known for HSDirMinAge they count again: the gate raises the cost of
// grinding (a day of running each node), it does not prevent it.
func TestHSDirAgeGateGrinding(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(7, 12))
	const period = 20000
	b := randomBlinded(rng)
	honest := fakePeers(rng, 100)
	var hostile []peer.ID
	for r := range uint8(HSDirReplicas) {
		hostile = append(hostile, grind(rng, b, period, r, hsdirAcceptRank, 20000)...)
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) // when the honest nodes joined
	now := start.Add(7 * 24 * time.Hour)
	joined := map[peer.ID]time.Time{}
	for _, p := range hostile {
		joined[p] = now.Add(-time.Hour)
	}
	all := append(slices.Clone(honest), hostile...)
	isHostile := func(p peer.ID) bool { return slices.Contains(hostile, p) }
	count := func(ps []peer.ID) (n int) {
		for _, p := range ps {
			if isHostile(p) {
				n++
			}
		}
		return n
	}

	ungated := ResponsibleHSDirs(all, b, period, DefaultPeriodLen, DefaultHSDirSpread)
	if got := count(ungated); got != len(ungated) {
		t.Fatalf("without the gate %d of the %d HSDirs are the attacker's; the ground IDs should take them all", got, len(ungated))
	}

	old := ageView(all, joined, "", start, now)
	stored := ResponsibleHSDirs(old, b, period, DefaultPeriodLen, DefaultHSDirSpread)
	if n := count(stored); n != 0 {
		t.Errorf("a week-old service stores on %d of the attacker's nodes", n)
	}
	if n := count(FetchOrder(old, b, period, DefaultPeriodLen, hsdirFetchSpread)); n != 0 {
		t.Errorf("a week-old client would ask %d of the attacker's nodes", n)
	}
	// Every HSDir the service chose accepts it in its own (week-old) view.
	for _, h := range stored {
		if !IsResponsible(h, ageView(all, joined, h, start, now), b, period, DefaultPeriodLen, hsdirAcceptRank) {
			t.Errorf("HSDir %d refuses the upload in its own gated view", slices.Index(all, h))
		}
	}

	// A client that started ten minutes ago ranks everything: the
	// attacker's nodes come first and have nothing; the honest ones after
	// them do.
	freshOrder := FetchOrder(ageView(all, joined, "", now.Add(-10*time.Minute), now), b, period, DefaultPeriodLen, hsdirFetchSpread)
	found := false
	for _, p := range freshOrder {
		if slices.Contains(stored, p) {
			found = true
		}
	}
	t.Logf("fresh client: %d of the %d HSDirs it may ask are the attacker's; found on an honest one: %v", count(freshOrder), len(freshOrder), found)
	if count(freshOrder) == 0 {
		t.Error("a client that just started gated the attacker's nodes it cannot date")
	}

	// A day later the attacker's nodes are old enough.
	later := now.Add(HSDirMinAge)
	if n := count(ResponsibleHSDirs(ageView(all, joined, "", start, later), b, period, DefaultPeriodLen, DefaultHSDirSpread)); n == 0 {
		t.Error("nodes known for HSDirMinAge are still gated")
	}
}

// TestHSDirAgeGateMixedObservers: services, clients and HSDirs of
// different ages disagree about the honest nodes that joined in the last
// day (a tenth of 100 here, each joined at a random time in that day), on
// top of views of 80-90 %: a week-old service and HSDirs, and a client
// that is a week old, a day old or ten minutes old. The client must
// still find the descriptor in at least 99 % of 300 trials each.
func TestHSDirAgeGateMixedObservers(t *testing.T) {
	t.Parallel()
	rng := mrand.New(mrand.NewPCG(3, 4))
	const period = 20000
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start.Add(7 * 24 * time.Hour)
	all := fakePeers(rng, 100)
	joined := map[peer.ID]time.Time{}
	for _, p := range all[:10] {
		joined[p] = now.Add(-time.Duration(rng.Int64N(int64(HSDirMinAge))))
	}
	for _, tc := range []struct {
		name        string
		clientSince time.Time
	}{
		{"week-old client", start},
		{"day-old client", now.Add(-HSDirMinAge)},
		{"fresh client", now.Add(-10 * time.Minute)},
	} {
		const trials = 300
		found := 0
		for range trials {
			b := randomBlinded(rng)
			stored := map[peer.ID]bool{}
			svc := randomView(rng, ageView(all, joined, "", start, now), 0.8, 0.9)
			for _, h := range ResponsibleHSDirs(svc, b, period, DefaultPeriodLen, DefaultHSDirSpread) {
				if IsResponsible(h, randomView(rng, ageView(all, joined, h, start, now), 0.8, 0.9), b, period, DefaultPeriodLen, hsdirAcceptRank) {
					stored[h] = true
				}
			}
			cl := randomView(rng, ageView(all, joined, "", tc.clientSince, now), 0.8, 0.9)
			for _, p := range FetchOrder(cl, b, period, DefaultPeriodLen, hsdirFetchSpread) {
				if stored[p] {
					found++
					break
				}
			}
		}
		pct := 100 * float64(found) / trials
		t.Logf("%s: found %.1f %%", tc.name, pct)
		if pct < 99 {
			t.Errorf("%s: found %.1f %% of the time, want at least 99 %%", tc.name, pct)
		}
	}
}
