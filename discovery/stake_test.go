package discovery

import (
	"context"
	"errors"
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
