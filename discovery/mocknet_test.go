package discovery

import (
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// TestMocknetFiftyNodes: on a 50-node mocknet every node's advert is found
// by a fresh client, which can then select paths.
func TestMocknetFiftyNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("large network")
	}
	ctx := testCtx(t, 3*time.Minute)
	mn, nodes := mocknetCluster(t, ctx, 50)
	publishAll(t, ctx, nodes)
	client := freshMocknetClient(t, ctx, mn, nodes[0].info())
	want := map[peer.ID]bool{}
	for _, nd := range nodes {
		want[nd.h.ID()] = true
	}
	if _, err := findAll(ctx, client, RoleRelay, want); err != nil {
		t.Fatal(err)
	}
	exits, err := client.FindExits(ctx, 9735, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(exits) != 17 { // i%3 == 0 for i < 50
		t.Fatalf("found %d exits, want 17", len(exits))
	}
	for i := 0; i < 100; i++ {
		path, err := client.SelectPath(ctx, PathRequest{Hops: 3, Final: RoleMempool, MaxPriceSat: 50})
		if err != nil {
			t.Fatal(err)
		}
		if !path[2].HasRole(RoleMempool) {
			t.Fatal("last hop is not a mempool node")
		}
	}
	// No key is captured here: the ground-ID check (censor.go) raised no
	// alarm at any provider (every key each node provides) or the client.
	for _, s := range append([]*Service{client}, servicesOf(nodes)...) {
		s.mu.Lock()
		n := s.censor.flagged
		s.mu.Unlock()
		if n != 0 {
			t.Fatalf("false alarm: %d keys flagged as captured on an honest network", n)
		}
	}
}

func servicesOf(nodes []*node) []*Service {
	out := make([]*Service, len(nodes))
	for i, nd := range nodes {
		out[i] = nd.s
	}
	return out
}

func freshMocknetClient(t testing.TB, ctx context.Context, mn mocknet.Mocknet, boot peer.AddrInfo) *Service {
	t.Helper()
	h, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	return startService(t, ctx, h, h.Peerstore().PrivKey(h.ID()), Config{Bootstrap: []peer.AddrInfo{boot}})
}

// BenchmarkFreshClientFindsRelaysAndExits: time for a fresh client on the
// 50-node mocknet to find >= 20 usable relays and >= 3 exits.
func BenchmarkFreshClientFindsRelaysAndExits(b *testing.B) {
	ctx := testCtx(b, 10*time.Minute)
	mn, nodes := mocknetCluster(b, ctx, 50)
	publishAll(b, ctx, nodes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h, err := mn.GenPeer()
		if err != nil {
			b.Fatal(err)
		}
		if err := mn.LinkAll(); err != nil {
			b.Fatal(err)
		}
		s, err := New(h, nil, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}, DisableAutoRefresh: true, Logger: testLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Start(ctx); err != nil {
			b.Fatal(err)
		}
		relays, err := s.Find(ctx, RoleRelay, 20)
		if err != nil || len(relays) < 20 {
			b.Fatalf("found %d relays: %v", len(relays), err)
		}
		exits, err := s.FindExits(ctx, 8333, 3)
		if err != nil || len(exits) < 3 {
			b.Fatalf("found %d exits: %v", len(exits), err)
		}
		b.StopTimer()
		s.Close()
		h.Close()
		b.StartTimer()
	}
}

// BenchmarkPublishDHTBytes: DHT protocol bytes sent per advert publication
// (provider records for relay + exit + 2 port classes = 4 keys) in a
// 12-host loopback network, reported as dht-bytes/publish, with the
// ground-ID check (censor.go: one more closest-peers walk per key) and
// without it, in the same network.
func BenchmarkPublishDHTBytes(b *testing.B) {
	ctx := testCtx(b, 10*time.Minute)
	nodes := cluster(b, ctx, 12, ModePrivate, func() (hostT, privT) { return loopbackHost(b, nil) })
	publishAll(b, ctx, nodes)
	bw := &byteCounter{proto: protocol.ID(string(ProtocolPrefix) + "/kad/1.0.0")}
	h, priv := loopbackHost(b, bw)
	s := startService(b, ctx, h, priv, Config{DHTServer: true, Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	seq := uint64(0)
	for _, check := range []bool{false, true} {
		name := "check=off"
		if check {
			name = "check=on"
		}
		b.Run(name, func(b *testing.B) {
			s.censor.off.Store(!check)
			start := bw.sent()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				seq++
				if err := s.Publish(ctx, testAdvert(0, seq)); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(bw.sent()-start)/float64(b.N), "dht-bytes/publish")
		})
	}
}
