package discovery

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/connmgr"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// aminoProto is the Amino DHT protocol: kad-dht with no prefix option.
const aminoProto = protocol.ID("/ipfs/kad/1.0.0")

// loopbackOnly is a connection gater that refuses, and remembers, every
// dial to an address that is not loopback: a test that ends with
// violations reached (or tried to reach) beyond this machine.
type loopbackOnly struct {
	mu  sync.Mutex
	bad []string // guarded by mu
}

var _ connmgr.ConnectionGater = (*loopbackOnly)(nil)

func (g *loopbackOnly) InterceptPeerDial(peer.ID) bool { return true }
func (g *loopbackOnly) InterceptAddrDial(_ peer.ID, a ma.Multiaddr) bool {
	if manet.IsIPLoopback(a) {
		return true
	}
	g.mu.Lock()
	g.bad = append(g.bad, a.String())
	g.mu.Unlock()
	return false
}
func (g *loopbackOnly) InterceptAccept(c network.ConnMultiaddrs) bool {
	return manet.IsIPLoopback(c.RemoteMultiaddr())
}
func (g *loopbackOnly) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}
func (g *loopbackOnly) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

func (g *loopbackOnly) violations() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.bad)
}

// gatedHost is loopbackHost with gater g.
func gatedHost(t testing.TB, g connmgr.ConnectionGater) (host.Host, crypto.PrivKey) {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := libp2p.New(
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ConnectionGater(g),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, priv
}

func speaks(h host.Host, p protocol.ID) bool {
	return slices.Contains(h.Mux().Protocols(), p)
}

// TestIPFSModeThroughPlainKadDHT: ipfs mode interoperates with an ordinary
// Amino DHT node. The bootstrap is a plain go-libp2p-kad-dht server with no
// protocol prefix option (so /ipfs/kad/1.0.0, as the public bootstrap peers
// run it) on loopback; a relay publishes through it and a client that knows
// only that bootstrap finds the relay's advert. Every host refuses and
// records any dial to a non-loopback address, and the test fails if one was
// ever attempted: the public bootstrap list must never be used.
func TestIPFSModeThroughPlainKadDHT(t *testing.T) {
	t.Parallel()
	gate := &loopbackOnly{}
	// Registered first, so it runs last: after every host has closed.
	t.Cleanup(func() {
		if bad := gate.violations(); len(bad) > 0 {
			t.Errorf("dials attempted to non-loopback addresses: %v", bad)
		}
	})
	ctx := testCtx(t, 60*time.Second)

	bh, _ := gatedHost(t, gate)
	// As kad-dht's own tests (dht_test.go setupDHT) but with the Amino
	// defaults: no ProtocolPrefix, no BootstrapPeers (so no public
	// fallback), auto-refresh off.
	bd, err := dht.New(bh, dht.Mode(dht.ModeServer), dht.DisableAutoRefresh())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bd.Close() })
	if !speaks(bh, aminoProto) {
		t.Fatalf("plain kad-dht does not speak %s: %v", aminoProto, bh.Mux().Protocols())
	}
	boot := []peer.AddrInfo{{ID: bh.ID(), Addrs: bh.Addrs()}}

	rh, rpriv := gatedHost(t, gate)
	relay := startService(t, ctx, rh, rpriv, Config{Mode: ModeIPFS, DHTServer: true, Bootstrap: boot})
	if err := relay.Publish(ctx, testAdvert(1, 7)); err != nil {
		t.Fatalf("publish through the plain DHT: %v", err)
	}

	ch, cpriv := gatedHost(t, gate)
	client := startService(t, ctx, ch, cpriv, Config{Mode: ModeIPFS, Bootstrap: boot})

	// Relays answer DHT queries on the Amino protocol; a client-only node
	// does not (client mode), and neither speaks the private protocol.
	for _, tc := range []struct {
		name  string
		h     host.Host
		proto protocol.ID
		want  bool
	}{
		{"relay amino", rh, aminoProto, true},
		{"relay private", rh, ProtocolPrefix + "/kad/1.0.0", false},
		{"client amino", ch, aminoProto, false},
		{"client private", ch, ProtocolPrefix + "/kad/1.0.0", false},
	} {
		if got := speaks(tc.h, tc.proto); got != tc.want {
			t.Errorf("%s: speaks %s = %v, want %v", tc.name, tc.proto, got, tc.want)
		}
	}

	got, err := findAll(ctx, client, RoleRelay, map[peer.ID]bool{rh.ID(): true})
	if err != nil {
		t.Fatal(err)
	}
	if ad := got[rh.ID()]; ad.Price(RoleRelay) != 7 || ad.OnionKey[0] != 1 {
		t.Fatalf("found advert %+v, want the relay's (price 7, onion key 1…)", ad)
	}
	// The bootstrap stored the provider record: it is what the client asked.
	if provs, err := bd.FindProviders(ctx, roleKey(RoleRelay)); err != nil || !slices.ContainsFunc(provs, func(ai peer.AddrInfo) bool { return ai.ID == rh.ID() }) {
		t.Fatalf("bootstrap's providers of the relay key: %v, %v", provs, err)
	}
}

// TestAminoBootstrap: the list ipfs mode falls back to is kad-dht's, every
// entry names a peer, and the public peers are never used when a list is
// configured or in private mode. Nothing is dialled here.
func TestAminoBootstrap(t *testing.T) {
	t.Parallel()
	amino := AminoBootstrap()
	if len(amino) == 0 {
		t.Fatal("no Amino bootstrap peers")
	}
	for i, s := range amino {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			t.Fatalf("AminoBootstrap()[%d] = %q: %v", i, s, err)
		}
		if _, err := peer.AddrInfoFromP2pAddr(a); err != nil {
			t.Fatalf("AminoBootstrap()[%d] = %q names no peer: %v", i, s, err)
		}
	}
	amino[0] = "changed"
	if AminoBootstrap()[0] == "changed" {
		t.Fatal("AminoBootstrap returns a shared slice")
	}

	local := []peer.AddrInfo{{ID: "x", Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/1")}}}
	store := newBoundedStore(1)
	for _, tc := range []struct {
		name   string
		cfg    Config
		public bool
	}{
		{"ipfs, none configured", Config{Mode: ModeIPFS}, true},
		{"ipfs, loopback configured", Config{Mode: ModeIPFS, Bootstrap: local}, false},
		{"ipfs, explicitly none", Config{Mode: ModeIPFS, Bootstrap: []peer.AddrInfo{}}, false},
		{"private, none", Config{Mode: ModePrivate}, false},
		{"zero mode, none", Config{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := tc.cfg.withDefaults()
			_, boot := dhtOptions(&cfg, store)
			var pub int
			for _, b := range boot {
				for _, a := range b.Addrs {
					if !manet.IsIPLoopback(a) {
						pub++
					}
				}
			}
			if (pub > 0) != tc.public || (tc.public && len(boot) != len(AminoBootstrap())) {
				t.Fatalf("bootstrap %v: %d non-loopback addresses, want public list %v", boot, pub, tc.public)
			}
		})
	}
}
