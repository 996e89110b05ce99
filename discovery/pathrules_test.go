package discovery

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestPrivateAddressesNeverGroup: loopback, RFC 1918, CGNAT and link-local
// addresses form no /16 group unless the private-network setting is on;
// then private /16s group like public ones.
func TestPrivateAddressesNeverGroup(t *testing.T) {
	t.Parallel()
	mk := func(i int, ip string, allow bool) *candidate {
		ad, _ := synthAdvert(t, 500+i, ip, []Role{RoleRelay}, nil)
		ad.Addrs = append(ad.Addrs, ma.StringCast("/ip4/127.0.0.1/tcp/4001"), ma.StringCast("/ip4/172.17.0.1/tcp/4001"))
		return newCandidate(&ad, nil, allow)
	}
	r := &selectRules{now: testEpoch}
	tests := []struct {
		a, b  string
		allow bool
		want  bool
	}{
		{"172.17.0.2", "172.17.0.3", false, false},
		{"192.168.1.2", "192.168.1.3", false, false},
		{"100.64.1.2", "100.64.9.3", false, false},
		{"169.254.1.2", "169.254.1.3", false, false},
		{"80.1.0.1", "80.2.0.1", false, false},
		{"80.1.0.1", "80.1.9.1", false, true},
		{"10.1.0.2", "10.1.0.3", true, true},
		{"10.1.0.2", "10.2.0.3", true, true}, // both also show 172.17.0.1
	}
	for i, tc := range tests {
		t.Run(fmt.Sprintf("%s-%s-%v", tc.a, tc.b, tc.allow), func(t *testing.T) {
			a, b := mk(2*i, tc.a, tc.allow), mk(2*i+1, tc.b, tc.allow)
			if got := conflicts(a, b, r); got != tc.want {
				t.Fatalf("conflicts = %v, want %v (groups %v / %v)", got, tc.want, a.groups, b.groups)
			}
		})
	}
	// With the setting on, containers in distinct private /16s that show
	// no shared bridge address are distinct groups.
	adA, _ := synthAdvert(t, 900, "10.1.0.2", []Role{RoleRelay}, nil)
	adB, _ := synthAdvert(t, 901, "10.2.0.2", []Role{RoleRelay}, nil)
	if conflicts(newCandidate(&adA, nil, true), newCandidate(&adB, nil, true), r) {
		t.Fatal("10.1/16 and 10.2/16 conflict with allow_private on")
	}
}

// TestPublishLeavesOutPrivateAddresses: with the private-network setting
// off, a node listening on every interface advertises only its public
// addresses; with it on, all of them.
func TestPublishLeavesOutPrivateAddresses(t *testing.T) {
	t.Parallel()
	for _, allow := range []bool{false, true} {
		h, priv := loopbackHost(t, nil)
		s, err := New(h, priv, Config{Logger: testLogger(), AllowPrivate: allow})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		ad := testAdvert(1, 10)
		ad.Peer = h.ID()
		ad.Addrs = []ma.Multiaddr{
			ma.StringCast("/ip4/127.0.0.1/tcp/4001"), ma.StringCast("/ip4/172.17.0.1/tcp/4001"),
			ma.StringCast("/ip4/192.168.1.7/tcp/4001"), ma.StringCast("/ip6/fe80::1/tcp/4001"),
			ma.StringCast("/ip4/81.2.3.4/tcp/4001"), ma.StringCast("/dns4/relay.example/tcp/4001"),
		}
		o := &ownAdvert{tmpl: ad, autoSeq: true, autoExpiry: true}
		s.mu.Lock()
		err = s.signLocked(o)
		s.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		want := 2
		if allow {
			want = 6
		}
		if len(o.signed.Addrs) != want {
			t.Fatalf("allow_private %v: advertised %v, want %d addresses", allow, o.signed.Addrs, want)
		}
	}
}

// TestLiarsCannotFailBuilds: an exit declaring every relay as family (one
// sided) changes nothing, and a final hop in the guards' /16 is redrawn
// rather than failing the build.
func TestLiarsCannotFailBuilds(t *testing.T) {
	t.Parallel()
	pool, _ := synthPool(t, 40, false, false)
	r := &selectRules{now: testEpoch, failBackoff: time.Minute, ageRamp: DefaultAgeRamp}
	var all []peer.ID
	for _, c := range pool {
		all = append(all, c.ad.Peer)
	}
	// The liar: an exit with a huge stake claiming everyone as family and
	// sitting in the /16 of every guard.
	guards := pool[1:4]
	liarAd, _ := synthAdvert(t, 7777, "90.9.0.1", []Role{RoleRelay, RoleExit}, all[:MaxFamily])
	liarAd.Addrs = nil
	for _, g := range guards {
		liarAd.Addrs = append(liarAd.Addrs, g.ad.Addrs...)
	}
	liar := newCandidate(&liarAd, nil, true)
	liar.stakeSat, liar.lnNode = StakeCapSat, "liar"
	pool = append(pool, liar)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 500; i++ {
		path, err := pickPath(rng, pool, guards, PathRequest{Hops: 3, Final: RoleExit}, r)
		if err != nil {
			t.Fatalf("build %d failed: %v", i, err)
		}
		if path[len(path)-1] == liar {
			t.Fatal("final hop conflicts with its guard")
		}
	}
}
