package node

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// TestVanguardOK: a layer-2 vanguard is never this node nor a relay
// priced above discovery.max_price_sat_per_mb.
func TestVanguardOK(t *testing.T) {
	t.Parallel()
	self, other := peer.ID("self"), peer.ID("other")
	priced := func(p peer.ID, sat uint64) discovery.Advert {
		return discovery.Advert{Peer: p, Prices: map[discovery.Role]uint64{discovery.RoleRelay: sat}}
	}
	for _, tc := range []struct {
		name string
		ad   discovery.Advert
		cap  uint64
		want bool
	}{
		{"self", priced(self, 1), 10, false},
		{"within cap", priced(other, 10), 10, true},
		{"above cap", priced(other, 11), 10, false},
		{"no cap", priced(other, 1000), 0, true},
	} {
		if got := vanguardOK(tc.ad, self, tc.cap); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

// TestRendezvousHop: the service builds only to a rendezvous point its own
// discovery caches with the rendezvous role, with the advert's key; this
// node itself is answered with its own hop when it has the role (a
// refusal only for it would point a client at the service's node).
func TestRendezvousHop(t *testing.T) {
	t.Parallel()
	self := peer.ID("self")
	cache := map[peer.ID]discovery.Advert{
		"rv":    {Peer: "rv", Roles: []discovery.Role{discovery.RoleRendezvous}, OnionKey: [32]byte{1}},
		"relay": {Peer: "relay", Roles: []discovery.Role{discovery.RoleRelay}, OnionKey: [32]byte{2}},
	}
	cached := func(p peer.ID) (discovery.Advert, bool) { ad, ok := cache[p]; return ad, ok }
	selfHop := &circuit.HopInfo{Peer: self, OnionKey: [32]byte{3}}
	for _, tc := range []struct {
		p     peer.ID
		self  *circuit.HopInfo
		ok    bool
		onion byte
	}{
		{"rv", nil, true, 1},
		{"relay", selfHop, false, 0},
		{"unknown", selfHop, false, 0},
		{self, selfHop, true, 3},
		{self, nil, false, 0},
	} {
		h, ok := rendezvousHop(tc.p, self, tc.self, cached)
		if ok != tc.ok || (ok && (h.Peer != tc.p || h.OnionKey[0] != tc.onion)) {
			t.Errorf("%s (self hop %v): %v %v", tc.p, tc.self != nil, h.Peer, ok)
		}
	}
}

// TestHSDirViewIncludesSelf: a node with the rendezvous role counts itself
// in its own HSDir view, with its own onion key (so the ring it ranks for
// an upload it receives is the one clients and services rank), and a node
// without the role does not.
func TestHSDirViewIncludesSelf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		roles []Role
		self  bool
	}{
		{[]Role{RoleRelay, RoleRendezvous}, true},
		{[]Role{RoleRelay}, false},
	} {
		n := startLoneNode(t, tc.roles)
		found := false
		for _, h := range n.hsdirView() {
			if h.Peer == n.ID() {
				found = true
				if h.OnionKey != n.onion.Public() {
					t.Errorf("roles %v: self in the view with onion key %x, want %x", tc.roles, h.OnionKey, n.onion.Public())
				}
			}
		}
		if found != tc.self {
			t.Errorf("roles %v: self in own HSDir view %v, want %v", tc.roles, found, tc.self)
		}
		n.Close()
	}
}

// startLoneNode starts a node with roles alone on a private loopback
// network (no SOCKS port, no bootstrap peers); the caller closes it.
func startLoneNode(t *testing.T, roles []Role) *Node {
	t.Helper()
	c := DefaultConfig(t.TempDir())
	c.Roles = roles
	off := false
	c.SOCKS.Enabled = &off
	c.Discovery.Mode = discovery.ModePrivate
	c.Discovery.Bootstrap = nil
	c.Discovery.AllowSameNetwork = true
	c.Network.AllowPrivatePeers = true
	c.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
	c.ApplyDefaults()
	n, err := New(c, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOnionClientSkipsSelfAsHSDir: a node that is both an onion-service
// client and an HSDir never asks itself for a descriptor over a circuit
// (a loop guard → middle → itself, unpaid at the last hop). Alone on its
// network, its HSDir ring is only itself: the lookup must find no HSDir
// to ask ("not found": no co-infuse descriptor anywhere) instead of
// trying to build to itself and failing ("unavailable").
func TestOnionClientSkipsSelfAsHSDir(t *testing.T) {
	t.Parallel()
	n := startLoneNode(t, []Role{RoleClient, RoleRelay, RoleRendezvous})
	defer n.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if n.Rendezvous() == nil {
		t.Fatal("no onion-service client")
	}
	for _, h := range n.onionHSDirView() {
		if h.Peer == n.ID() {
			t.Fatal("the onion client's HSDir view holds this node")
		}
	}
	// A valid v3 address (rend-spec-v3 §6 test vector) nobody publishes.
	_, err := n.Rendezvous().Dial(ctx, "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion", 80)
	if !errors.Is(err, rendezvous.ErrDescriptorNotFound) || errors.Is(err, rendezvous.ErrDescriptorUnavailable) {
		t.Fatalf("lookup with only this node as HSDir: %v, want ErrDescriptorNotFound (no circuit to itself)", err)
	}
}
