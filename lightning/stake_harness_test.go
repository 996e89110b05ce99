package lightning_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/lightning"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

// stakeHost is a libp2p host on loopback with its discovery Service.
func stakeHost(ctx context.Context, t *testing.T, cfg discovery.Config) (host.Host, *discovery.Service) {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(libp2p.Identity(priv), libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cfg.DisableAutoRefresh, cfg.AllowSameNetwork, cfg.DHTServer = true, true, true
	if cfg.Bootstrap == nil {
		cfg.Bootstrap = []peer.AddrInfo{}
	}
	s, err := discovery.New(h, priv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return h, s
}

// verifyFuncs are the client side of the stake rule over c, as node wires
// them (node/stake.go).
func verifyFuncs(c *lightning.Client, cfg *discovery.Config) {
	cfg.VerifyStake = func(ctx context.Context, msg []byte, sig string) (string, error) {
		n, err := c.VerifyMessage(ctx, msg, sig)
		if errors.Is(err, lightning.ErrStakeUnverified) {
			return "", nil
		}
		return n, err
	}
	cfg.NodeChannels = func(ctx context.Context, node string) ([]discovery.StakeChannel, uint32, error) {
		chans, best, err := c.NodeChannels(ctx, node)
		if errors.Is(err, lightning.ErrNodeNotInGraph) {
			return nil, best, nil
		}
		out := make([]discovery.StakeChannel, len(chans))
		for i, ch := range chans {
			out[i] = discovery.StakeChannel{CapacitySat: ch.CapacitySat, FundingHeight: ch.FundingHeight, Peer: ch.Peer}
		}
		return out, best, err
	}
}

// TestStakeProofRealLND: a relay staked by Bob's LND proves it to a client
// that checks with Alice's LND (signature and public channel graph); a relay
// naming Bob's node with a proof signed by another Lightning node (Alice's)
// is refused, as is one naming a node absent from the graph.
func TestStakeProofRealLND(t *testing.T) {
	net := startNetwork(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	alice := dial(ctx, t, net.Alice())
	bob := dial(ctx, t, net.Bob())
	bobKey := net.Bob().Pubkey

	// Alice's graph must hold Bob's node and the public channel (announced
	// after six confirmations); mine until it does.
	var chans []lightning.GraphChannel
	var best uint32
	for {
		var err error
		chans, best, err = alice.NodeChannels(ctx, bobKey)
		if err == nil && len(chans) > 0 {
			break
		}
		if !errors.Is(err, lightning.ErrNodeNotInGraph) && err != nil {
			t.Fatal(err)
		}
		if err := net.Mine(ctx, 1); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Bob never appeared in Alice's graph: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
	}
	if chans[0].CapacitySat != 1_000_000 || chans[0].FundingHeight == 0 || chans[0].FundingHeight > best {
		t.Fatalf("graph channel %+v at best height %d", chans[0], best)
	}
	if chans[0].Peer != net.Alice().Pubkey {
		t.Fatalf("graph channel's other end %q, want Alice %q", chans[0].Peer, net.Alice().Pubkey)
	}

	staked := discovery.Advert{Roles: []discovery.Role{discovery.RoleRelay}, Prices: map[discovery.Role]uint64{discovery.RoleRelay: 10}, Payee: bobKey}
	hb, relay := stakeHost(ctx, t, discovery.Config{SignStake: bob.SignMessage})
	_ = relay.Publish(ctx, staked) // no DHT peers to provide to; the advert is served
	// A liar names Bob's node but can only get Alice's LND to sign.
	hr, rogue := stakeHost(ctx, t, discovery.Config{SignStake: alice.SignMessage})
	_ = rogue.Publish(ctx, staked)

	var ccfg discovery.Config
	verifyFuncs(alice, &ccfg)
	hc, client := stakeHost(ctx, t, ccfg)
	for _, h := range []host.Host{hb, hr} {
		hc.Peerstore().AddAddrs(h.ID(), h.Addrs(), time.Hour)
		ad, err := client.Lookup(ctx, h.ID())
		if err != nil {
			t.Fatal(err)
		}
		if ad.Stake.IsZero() {
			t.Fatalf("%s advert carries no stake proof", h.ID())
		}
	}
	client.CheckStakes(ctx)
	got := map[peer.ID]discovery.PeerStatus{}
	for _, ps := range client.Known() {
		got[ps.Peer] = ps
	}
	good, bad := got[hb.ID()], got[hr.ID()]
	t.Logf("staked relay: %+v weight %.4f", good.Stake, good.Weight)
	t.Logf("rogue relay: %+v weight %.4f", bad.Stake, bad.Weight)
	if good.Stake.Node != bobKey || good.Stake.Channels != 1 || good.Stake.CapacitySat != 1_000_000 || good.Stake.Refused != "" {
		t.Fatalf("staked relay's stake = %+v", good.Stake)
	}
	if bad.Stake.Node != "" || !strings.Contains(bad.Stake.Refused, "another lightning node") {
		t.Fatalf("rogue's stake = %+v, want refused", bad.Stake)
	}
	if good.Weight < bad.Weight {
		t.Fatalf("staked weight %.4f below the refused one's %.4f", good.Weight, bad.Weight)
	}

	// The signature itself: Bob's LND signs, Alice's recovers Bob.
	msg := discovery.StakeMessage(hb.ID(), bobKey, time.Now().Add(time.Hour))
	sig, err := bob.SignMessage(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if who, err := alice.VerifyMessage(ctx, msg, sig); err != nil || who != bobKey {
		t.Fatalf("VerifyMessage = %q, %v; want Bob", who, err)
	}
	other := discovery.StakeMessage(hr.ID(), bobKey, time.Now().Add(time.Hour))
	if who, err := alice.VerifyMessage(ctx, other, sig); err == nil && who == bobKey {
		t.Fatal("Bob's signature verified for another peer's message")
	}
}
