package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/discovery"
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
