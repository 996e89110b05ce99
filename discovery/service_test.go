package discovery

import (
	"errors"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"zero", Config{}, ""},
		{"ipfs", Config{Mode: ModeIPFS}, ""},
		{"bad mode", Config{Mode: "tor"}, "discovery.mode"},
		{"negative guards", Config{Guards: -1}, "discovery.guards"},
		{"ttl too long", Config{AdvertTTL: MaxAdvertLifetime + time.Second}, "discovery.advert_ttl"},
		{"republish not below ttl", Config{AdvertTTL: time.Hour, Republish: time.Hour}, "discovery.republish"},
		{"bootstrap without addrs", Config{Bootstrap: []peer.AddrInfo{{ID: "x"}}}, "discovery.bootstrap[0]"},
		{"negative max known", Config{MaxKnown: -1}, "discovery.max_known"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("err = %v, want one naming %s", err, tc.field)
			}
		})
	}
}

// TestLifecycle: Start and Close are safe twice; calls after Close fail
// with ErrClosed; calls before Start with ErrNotStarted.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	h, priv := loopbackHost(t, nil)
	s, err := New(h, priv, Config{Logger: testLogger(), DisableAutoRefresh: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 20*time.Second)
	if err := s.Publish(ctx, testAdvert(1, 1)); !errors.Is(err, ErrNotStarted) {
		t.Fatalf("publish before start: %v", err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal("second Start:", err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close %d: %v", i, err)
		}
	}
	if _, err := s.Find(ctx, RoleRelay, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("find after close: %v", err)
	}
	if err := s.Start(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("start after close: %v", err)
	}
	if _, err := New(h, nil, Config{}); err != nil {
		t.Fatal("nil key (client only):", err)
	}
	otherPriv, _ := testKey(t, "not the host")
	if _, err := New(h, otherPriv, Config{}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("foreign key: %v", err)
	}
}

// TestRepublishAndReport: the advert is re-signed with a higher seq on the
// republish schedule and a client sees it; Report feeds Known.
func TestRepublishAndReport(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	nodes := cluster(t, ctx, 3, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	pub := nodes[1] // named in the family list only
	h, priv := loopbackHost(t, nil)
	s := startService(t, ctx, h, priv, Config{
		DHTServer: true, Bootstrap: []peer.AddrInfo{nodes[0].info()},
		AdvertTTL: time.Hour, Republish: 50 * time.Millisecond,
	})
	ad := testAdvert(2, 5)
	ad.Family = []peer.ID{h.ID(), pub.h.ID(), pub.h.ID()} // self and a duplicate: dropped
	if err := s.Publish(ctx, ad); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	seq0, fam := s.own.signed.Seq, s.own.signed.Family
	s.mu.Unlock()
	if len(fam) != 1 || fam[0] != pub.h.ID() {
		t.Fatalf("family %v, want just %s", fam, pub.h.ID())
	}
	ch, cpriv := loopbackHost(t, nil)
	client := startService(t, ctx, ch, cpriv, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	for {
		got, err := findAll(ctx, client, RoleRelay, map[peer.ID]bool{h.ID(): true})
		if err != nil {
			t.Fatal(err)
		}
		if got[h.ID()].Seq > seq0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no republished advert seen")
		}
	}
	client.Report(h.ID(), true)
	client.Report(h.ID(), false)
	client.Report("unknown-peer", false) // ignored
	var st PeerStatus
	for _, ps := range client.Known() {
		if ps.Peer == h.ID() {
			st = ps
		}
	}
	if st.OK != 1 || st.Fail != 1 || st.LastResult != "fail" || st.Prices[RoleRelay] != 5 {
		t.Fatalf("status %+v", st)
	}
	// Only the republishing node has published, and it is no mempool.
	if _, err := client.SelectPath(ctx, PathRequest{Hops: 1, Final: RoleMempool}); !errors.Is(err, ErrNoPath) {
		t.Fatal("selected a mempool node where none exists")
	}
}

// TestImportsOneWay: discovery imports no other co-infuse package but the
// plumbing under internal/ (netclass), as the house map allows.
func TestImportsOneWay(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		af, err := parser.ParseFile(fset, f, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, im := range af.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if strings.HasPrefix(p, "github.com/co-infuse/co-infuse/") && !strings.HasPrefix(p, "github.com/co-infuse/co-infuse/internal/") {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}

// TestOwnSeqSurvivesRestart: a node restarted with its clock set back
// still publishes a seq above its last one.
func TestOwnSeqSurvivesRestart(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	nodes := cluster(t, ctx, 2, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	dir := t.TempDir()
	h, priv := loopbackHost(t, nil)
	boot := []peer.AddrInfo{nodes[0].info()}
	clock := time.Now()
	s1, err := New(h, priv, Config{CacheDir: dir, Bootstrap: boot, DisableAutoRefresh: true, Logger: testLogger(), Now: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s1.Publish(ctx, testAdvert(1, 1)); err != nil {
		t.Fatal(err)
	}
	seq1 := s1.own.signed.Seq
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	back := clock.Add(-time.Hour)
	s2, err := New(h, priv, Config{CacheDir: dir, Bootstrap: boot, DisableAutoRefresh: true, Logger: testLogger(), Now: func() time.Time { return back }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if err := s2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s2.Publish(ctx, testAdvert(1, 2)); err != nil {
		t.Fatal(err)
	}
	if seq2 := s2.own.signed.Seq; seq2 <= seq1 {
		t.Fatalf("seq after restart %d, before %d", seq2, seq1)
	}
}

// TestCloseDuringRepublish: Close returns while the republish loop is busy
// providing. (The loop once took the lifecycle lock that Close holds while
// waiting for it; that window was narrow, so this is a liveness check more
// than a reliable reproducer.)
func TestCloseDuringRepublish(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	nodes := cluster(t, ctx, 3, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	h, priv := loopbackHost(t, nil)
	s, err := New(h, priv, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}, DisableAutoRefresh: true,
		Logger: testLogger(), AdvertTTL: time.Hour, Republish: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(ctx, testAdvert(1, 1)); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	seq0 := s.ownSeq
	s.mu.Unlock()
	for { // wait until the loop has republished at least twice
		s.mu.Lock()
		n := s.ownSeq - seq0
		s.mu.Unlock()
		if n >= 2 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("republish loop did not run")
		}
		runtime.Gosched()
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("Close hung while republishing")
	}
}

// TestBootstrapLists: ipfs mode falls back to the public bootstrap list
// only when none is configured (tests always configure one); private mode
// never does. Nothing is dialled here.
func TestBootstrapLists(t *testing.T) {
	t.Parallel()
	store := newBoundedStore(1)
	if _, boot := dhtOptions(&Config{Mode: ModeIPFS}, store); len(boot) == 0 {
		t.Fatal("ipfs mode without bootstrap has no public peers")
	}
	if _, boot := dhtOptions(&Config{Mode: ModeIPFS, Bootstrap: []peer.AddrInfo{}}, store); len(boot) != 0 {
		t.Fatal("explicit empty list replaced")
	}
	if _, boot := dhtOptions(&Config{Mode: ModePrivate}, store); len(boot) != 0 {
		t.Fatal("private mode got public peers")
	}
}

// TestLookup: a node's advert is fetched directly on first Lookup and then
// served from the cache; an unreachable peer is an error.
func TestLookup(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	nodes := cluster(t, ctx, 3, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	publishAll(t, ctx, nodes)
	ch, cpriv := loopbackHost(t, nil)
	client := startService(t, ctx, ch, cpriv, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	ch.Peerstore().AddAddrs(nodes[2].h.ID(), nodes[2].h.Addrs(), time.Hour)
	ad, err := client.Lookup(ctx, nodes[2].h.ID())
	if err != nil {
		t.Fatal(err)
	}
	if ad.Peer != nodes[2].h.ID() || ad.Price(RoleRelay) != 12 {
		t.Fatalf("advert %+v", ad)
	}
	if len(client.Known()) != 1 {
		t.Fatal("looked-up advert not cached")
	}
	_, stranger := testKey(t, "stranger")
	if _, err := client.Lookup(ctx, stranger); err == nil {
		t.Fatal("lookup of an unreachable peer succeeded")
	}
}
