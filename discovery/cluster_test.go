package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/metrics"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Process-wide libp2p/quic/log helpers that live for the process.
		goleak.IgnoreAnyFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreAnyFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/libp2p/go-libp2p/p2p/transport/quicreuse.(*reuse).gc"),
	)
}

// testLogger discards below warn unless DISCOVERY_TEST_DEBUG is set.
func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if os.Getenv("DISCOVERY_TEST_DEBUG") != "" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// loopbackHost starts a real libp2p host on 127.0.0.1 only: no relay, no
// NAT port mapping, no mDNS, no AutoNAT service.
func loopbackHost(t testing.TB, bw metrics.Reporter) (host.Host, crypto.PrivKey) {
	t.Helper()
	priv, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	}
	if bw != nil {
		opts = append(opts, libp2p.BandwidthReporter(bw))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, priv
}

// node is a host with its discovery service.
type node struct {
	h    host.Host
	priv crypto.PrivKey
	s    *Service
}

func (n *node) info() peer.AddrInfo { return peer.AddrInfo{ID: n.h.ID(), Addrs: n.h.Addrs()} }

// startService builds and starts a Service on h, closed at cleanup.
func startService(t testing.TB, ctx context.Context, h host.Host, priv crypto.PrivKey, cfg Config) *Service {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	cfg.DisableAutoRefresh = true
	cfg.AllowSameNetwork = true
	s, err := New(h, priv, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// cluster starts n DHT-server nodes; node 0 bootstraps the rest.
func cluster(t testing.TB, ctx context.Context, n int, mode string, mk func() (host.Host, crypto.PrivKey)) []*node {
	t.Helper()
	nodes := make([]*node, n)
	for i := range nodes {
		h, priv := mk()
		nodes[i] = &node{h: h, priv: priv}
	}
	for i, nd := range nodes {
		cfg := Config{Mode: mode, DHTServer: true, Bootstrap: []peer.AddrInfo{}}
		if i > 0 {
			cfg.Bootstrap = []peer.AddrInfo{nodes[0].info()}
		}
		nd.s = startService(t, ctx, nd.h, nd.priv, cfg)
	}
	return nodes
}

// testAdvert is what cluster node i publishes: every node relays, every
// third is an exit for Bitcoin and Lightning ports, every fifth a mempool.
func testAdvert(i int, price uint64) Advert {
	ad := Advert{
		Roles:        []Role{RoleRelay},
		Prices:       map[Role]uint64{RoleRelay: price},
		CapacityKBps: 1024,
		OnionKey:     [32]byte{byte(i)},
	}
	if i%3 == 0 {
		ad.Roles = append(ad.Roles, RoleExit)
		ad.Prices[RoleExit] = price * 2
		ad.ExitPorts = []PortRange{{8333, 8333}, {9735, 9735}}
	}
	if i%5 == 0 {
		ad.Roles = append(ad.Roles, RoleMempool)
		ad.Prices[RoleMempool] = price
	}
	return ad
}

func publishAll(t testing.TB, ctx context.Context, nodes []*node) {
	t.Helper()
	for i, nd := range nodes {
		if err := nd.s.Publish(ctx, testAdvert(i, uint64(10+i))); err != nil {
			t.Fatalf("node %d publish: %v", i, err)
		}
	}
}

// mocknetCluster starts n nodes on a go-libp2p mocknet, all linked.
func mocknetCluster(t testing.TB, ctx context.Context, n int) (mocknet.Mocknet, []*node) {
	t.Helper()
	mn := mocknet.New()
	t.Cleanup(func() { mn.Close() })
	mk := func() (host.Host, crypto.PrivKey) {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		if err := mn.LinkAll(); err != nil {
			t.Fatal(err)
		}
		return h, h.Peerstore().PrivKey(h.ID())
	}
	return mn, cluster(t, ctx, n, ModePrivate, mk)
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// findAll polls Find under ctx until want peers are found.
func findAll(ctx context.Context, s *Service, role Role, want map[peer.ID]bool) (map[peer.ID]Advert, error) {
	got := map[peer.ID]Advert{}
	for {
		ads, err := s.Find(ctx, role, 1000)
		if err != nil {
			return got, err
		}
		for _, a := range ads {
			got[a.Peer] = a
		}
		missing := 0
		for p := range want {
			if _, ok := got[p]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return got, nil
		}
		if ctx.Err() != nil {
			return got, fmt.Errorf("%d of %d adverts not found: %w", missing, len(want), ctx.Err())
		}
	}
}

type (
	hostT = host.Host
	privT = crypto.PrivKey
)

// byteCounter is a metrics.Reporter that counts bytes written to streams of
// one protocol, synchronously (libp2p's BandwidthCounter only totals on a
// one-second sweep).
type byteCounter struct {
	proto protocol.ID
	mu    sync.Mutex
	out   int64 // guarded by mu
}

var _ metrics.Reporter = (*byteCounter)(nil)

func (c *byteCounter) LogSentMessageStream(n int64, p protocol.ID, _ peer.ID) {
	if p == c.proto {
		c.mu.Lock()
		c.out += n
		c.mu.Unlock()
	}
}

func (c *byteCounter) sent() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out
}

func (*byteCounter) LogSentMessage(int64)                                  {}
func (*byteCounter) LogRecvMessage(int64)                                  {}
func (*byteCounter) LogRecvMessageStream(int64, protocol.ID, peer.ID)      {}
func (*byteCounter) GetBandwidthForPeer(peer.ID) metrics.Stats             { return metrics.Stats{} }
func (*byteCounter) GetBandwidthForProtocol(protocol.ID) metrics.Stats     { return metrics.Stats{} }
func (*byteCounter) GetBandwidthTotals() metrics.Stats                     { return metrics.Stats{} }
func (*byteCounter) GetBandwidthByPeer() map[peer.ID]metrics.Stats         { return nil }
func (*byteCounter) GetBandwidthByProtocol() map[protocol.ID]metrics.Stats { return nil }
func (*byteCounter) Reset()                                                {}
func (*byteCounter) TrimIdle(time.Time)                                    {}
