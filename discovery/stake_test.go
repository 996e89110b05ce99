package discovery

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestStakeVerdicts: the stake check records why a proof is refused, keeps
// the last verdict while LND is offline, and a verdict stops counting once
// stale, once the proof expires, or once the advert carries another proof.
func TestStakeVerdicts(t *testing.T) {
	t.Parallel()
	now := testEpoch
	lndUp := true
	h, _ := loopbackHost(t, nil)
	s, err := New(h, nil, Config{Logger: testLogger(), Now: func() time.Time { return now },
		VerifyStake: func(_ context.Context, msg []byte, sig string) (string, error) {
			if !lndUp {
				return "", errors.New("lnd unreachable")
			}
			if sig == "yyyy" {
				return "", nil // does not verify
			}
			return "02" + sig[:64], nil // the "signer" is encoded in the test signature
		},
		NodeChannels: func(_ context.Context, node string) ([]StakeChannel, uint32, error) {
			return []StakeChannel{{CapacitySat: 20_000_000, FundingHeight: 100}}, 100 + StakeFullAgeBlocks, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	mk := func(seed, sig string, signerIsPayee bool) peer.ID {
		priv, id := testKey(t, seed)
		ad := sampleAdvert(t, id) // payee 02abab…
		ad.Expiry = now.Add(48 * time.Hour)
		if signerIsPayee {
			ad.Payee = "02" + sig[:64]
		}
		ad.Stake = StakeProof{Expiry: now.Add(30 * 24 * time.Hour), Sig: sig}
		env, err := SignAdvert(&ad, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.accept(env, "", nil); err != nil {
			t.Fatal(err)
		}
		return id
	}
	hex64 := "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" // 'b' is zbase32 and hex
	good := mk("good", hex64, true)
	other := mk("other", hex64, false)
	bad := mk("bad", "yyyy", false)
	if n := s.CheckStakes(context.Background()); n != 3 {
		t.Fatalf("checked %d proofs, want 3", n)
	}
	status := func() map[peer.ID]PeerStatus {
		m := map[peer.ID]PeerStatus{}
		for _, ps := range s.Known() {
			m[ps.Peer] = ps
		}
		return m
	}
	st := status()
	if st[good].Stake.EffectiveSat != 20_000_000 || st[good].Stake.Node == "" {
		t.Fatalf("good stake %+v", st[good].Stake)
	}
	if st[other].Stake.Refused == "" || st[bad].Stake.Refused == "" {
		t.Fatalf("refusals: %+v / %+v", st[other].Stake, st[bad].Stake)
	}
	if st[good].Weight <= st[bad].Weight {
		t.Fatal("staked node does not outweigh an unstaked one")
	}
	// LND goes offline: a day later the re-check fails, the verdict stays.
	lndUp = false
	now = now.Add(25 * time.Hour)
	s.CheckStakes(context.Background())
	if s := status()[good].Stake; s.EffectiveSat != 20_000_000 {
		t.Fatalf("verdict lost while LND is offline: %+v", s)
	}
	// Past StakeMaxStale without LND the stake stops counting.
	now = testEpoch.Add(DefaultStakeMaxStale + time.Hour)
	if s := status()[good].Stake; s.EffectiveSat != 0 {
		t.Fatalf("stale verdict still counts: %+v", s)
	}
}

// stakeService is a Service (not started: no DHT) whose fake LND verifies
// any proof as signed by "02"+sig[:64] and gives every node one 20 M sat
// channel of full age; add puts a relay+exit advert in its cache, staked
// by the Lightning node named by sig ("" for none).
func stakeService(t *testing.T) (s *Service, add func(seed, sig string) peer.ID) {
	t.Helper()
	h, _ := loopbackHost(t, nil)
	s, err := New(h, nil, Config{Logger: testLogger(), Now: func() time.Time { return testEpoch },
		VerifyStake: func(_ context.Context, _ []byte, sig string) (string, error) { return "02" + sig[:64], nil },
		NodeChannels: func(_ context.Context, node string) ([]StakeChannel, uint32, error) {
			return []StakeChannel{{CapacitySat: 20_000_000, FundingHeight: 100}}, 100 + StakeFullAgeBlocks, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, func(seed, sig string) peer.ID {
		priv, id := testKey(t, seed)
		ad := sampleAdvert(t, id)
		ad.Expiry = testEpoch.Add(48 * time.Hour)
		if sig != "" {
			ad.Payee = "02" + sig[:64]
			ad.Stake = StakeProof{Expiry: testEpoch.Add(7 * 24 * time.Hour), Sig: sig}
		}
		env, err := SignAdvert(&ad, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.accept(env, "", nil); err != nil {
			t.Fatal(err)
		}
		return id
	}
}

// stakeSig is the test stake signature of Lightning node i: stakeService
// verifies it as "02" + its first 64 characters, one node per i. It uses
// only characters that are both zbase32 (a signature) and hex (a payee).
func stakeSig(i int) string {
	const digits = "bdf8ec1a345679"
	sig := []byte(strings.Repeat("b", 64))
	for j := 63; i > 0; j-- {
		sig[j] = digits[i%len(digits)]
		i /= len(digits)
	}
	return string(sig)
}

// TestSelectPathUsesStake: the Service's own path selection (not only the
// simulation and `peers`) weighs the verified stake: with StakedQuorum
// staked Lightning nodes of 20 M sat among four unstaked nodes, the final
// hop of every path is staked (unstaked nodes fill neither end of a staked
// pick), where without stake it would be 10 paths in 14.
func TestSelectPathUsesStake(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	s, add := stakeService(t)
	staked := map[peer.ID]bool{}
	for i := 0; i < StakedQuorum; i++ {
		staked[add(fmt.Sprintf("staked-%d", i), stakeSig(i))] = true
	}
	for i := 0; i < 4; i++ {
		add(fmt.Sprintf("plain-%d", i), "")
	}
	if n := s.CheckStakes(ctx); n != StakedQuorum {
		t.Fatalf("checked %d proofs, want %d", n, StakedQuorum)
	}
	hits := 0
	for i := 0; i < 400; i++ {
		path, err := s.SelectPath(ctx, PathRequest{Hops: 1})
		if err != nil {
			t.Fatal(err)
		}
		if staked[path[0].Peer] {
			hits++
		}
	}
	t.Logf("staked nodes chosen in %d of 400 paths", hits)
	if hits != 400 {
		t.Fatalf("staked nodes chosen in %d of 400 paths, want all", hits)
	}
}

// TestPeersShowPositionShares: `peers` shows each node's chance of being
// picked as guard, middle and exit, with every position rule applied.
//   - StakedQuorum staked nodes and four unstaked ones: the staked nodes
//     share every guard and exit pick (a tenth each) and the unstaked
//     ones at most 2 % of the middle picks;
//   - one staked node among 19 unstaked ones (a network that does not
//     stake yet): the staked node holds FamilyMaxShare of every position
//     and the others share the rest equally;
//   - one staked node among four: the cap is 1/5, a fair share, so stake
//     gains nothing there and loses nothing either;
//   - no stake at all (a devnet): every node has an equal share.
func TestPeersShowPositionShares(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	tests := []struct {
		name             string
		staked, unstaked int
		// want per staked node (guard = exit) and middle; the unstaked
		// nodes share the rest of each position equally.
		wantEnd, wantMid float64
	}{
		{"quorum staked", StakedQuorum, 4, 0.1, -1},
		{"one staked among 19", 1, 19, FamilyMaxShare, FamilyMaxShare},
		{"one staked among 4", 1, 4, 0.2, 0.2},
		{"no stake", 0, 5, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, add := stakeService(t)
			staked := map[peer.ID]bool{}
			for i := 0; i < tc.staked; i++ {
				staked[add(fmt.Sprintf("staked-%d", i), stakeSig(i))] = true
			}
			for i := 0; i < tc.unstaked; i++ {
				add(fmt.Sprintf("plain-%d", i), "")
			}
			s.CheckStakes(ctx)
			endRest := (1 - float64(tc.staked)*tc.wantEnd) / float64(tc.unstaked)
			midRest := (1 - float64(tc.staked)*tc.wantMid) / float64(tc.unstaked)
			var mid, unstakedMid float64
			for _, ps := range s.Known() {
				sh := ps.Share
				mid += sh.Middle
				switch {
				case staked[ps.Peer]:
					if math.Abs(sh.Guard-tc.wantEnd) > 1e-9 || math.Abs(sh.Exit-tc.wantEnd) > 1e-9 ||
						tc.wantMid >= 0 && math.Abs(sh.Middle-tc.wantMid) > 1e-9 {
						t.Errorf("staked node's shares %+v, want guard and exit %.4f, middle %.4f", sh, tc.wantEnd, tc.wantMid)
					}
				default:
					unstakedMid += sh.Middle
					if math.Abs(sh.Guard-endRest) > 1e-9 || math.Abs(sh.Exit-endRest) > 1e-9 ||
						tc.wantMid >= 0 && math.Abs(sh.Middle-midRest) > 1e-9 {
						t.Errorf("unstaked node's shares %+v, want guard and exit %.4f, middle %.4f", sh, endRest, midRest)
					}
				}
			}
			t.Logf("%s: unstaked nodes' middle share %.4f", tc.name, unstakedMid)
			if math.Abs(mid-1) > 1e-9 {
				t.Errorf("middle shares sum to %.6f, want 1", mid)
			}
			if tc.wantMid < 0 && (unstakedMid <= 0 || unstakedMid > UnstakedMaxShare) {
				t.Errorf("unstaked nodes' middle share %.4f, want in (0, %.2f]", unstakedMid, UnstakedMaxShare)
			}
		})
	}
}

// TestSelectPathOneLightningNodeOneFamily: two nodes proving the same
// Lightning node never share a path built by the Service.
func TestSelectPathOneLightningNodeOneFamily(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	s, add := stakeService(t)
	a := add("twin-a", strings.Repeat("c", 64))
	b := add("twin-b", strings.Repeat("c", 64))
	add("other", strings.Repeat("d", 64))
	if n := s.CheckStakes(ctx); n != 3 {
		t.Fatalf("checked %d proofs, want 3", n)
	}
	for i := 0; i < 200; i++ {
		path, err := s.SelectPath(ctx, PathRequest{Hops: 2})
		if err != nil {
			t.Fatal(err)
		}
		ids := []peer.ID{path[0].Peer, path[1].Peer}
		if slices.Contains(ids, a) && slices.Contains(ids, b) {
			t.Fatalf("path %d holds both identities of one Lightning node", i)
		}
	}
}

// TestStakeSharedChannelCountsOnce: a channel between two staked Lightning
// nodes counts half for each, so an operator cannot double its stake by
// opening channels between its own nodes; channels to anyone else count in
// full, and a counterparty that is not staked changes nothing.
func TestStakeSharedChannelCountsOnce(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, time.Minute)
	b, c, d := "02"+strings.Repeat("b", 64), "02"+strings.Repeat("c", 64), "02"+strings.Repeat("d", 64)
	const best = 100 + StakeFullAgeBlocks
	chans := map[string][]StakeChannel{
		b: {{CapacitySat: 20_000_000, FundingHeight: 100, Peer: c}, {CapacitySat: 10_000_000, FundingHeight: 100, Peer: "03hub"}},
		c: {{CapacitySat: 20_000_000, FundingHeight: 100, Peer: b}, {CapacitySat: 4_000_000, FundingHeight: 100, Peer: d}},
	}
	h, _ := loopbackHost(t, nil)
	s, err := New(h, nil, Config{Logger: testLogger(), Now: func() time.Time { return testEpoch },
		VerifyStake: func(_ context.Context, _ []byte, sig string) (string, error) { return "02" + sig[:64], nil },
		NodeChannels: func(_ context.Context, node string) ([]StakeChannel, uint32, error) {
			return chans[node], best, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ids := map[string]peer.ID{}
	for _, node := range []string{b, c} {
		priv, id := testKey(t, "shared-"+node)
		ad := sampleAdvert(t, id)
		ad.Expiry = testEpoch.Add(48 * time.Hour)
		ad.Payee = node
		ad.Stake = StakeProof{Expiry: testEpoch.Add(7 * 24 * time.Hour), Sig: node[2:]}
		env, err := SignAdvert(&ad, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.accept(env, "", nil); err != nil {
			t.Fatal(err)
		}
		ids[node] = id
	}
	if n := s.CheckStakes(ctx); n != 2 {
		t.Fatalf("checked %d proofs, want 2", n)
	}
	got := map[peer.ID]int64{}
	for _, ps := range s.Known() {
		got[ps.Peer] = ps.Stake.EffectiveSat
	}
	// b: 10 M to a hub + half of 20 M with c; c: 4 M to unstaked d + half
	// of the same 20 M. 34 M locked, 34 M counted (54 M before).
	if got[ids[b]] != 20_000_000 || got[ids[c]] != 14_000_000 {
		t.Fatalf("stakes b=%d c=%d, want 20000000 and 14000000", got[ids[b]], got[ids[c]])
	}
}
