package node

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"

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
