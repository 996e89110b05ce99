package discovery

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// serveRaw makes h answer the advert protocol with raw bytes instead of
// what its Service publishes.
func serveRaw(h host.Host, raw []byte) {
	h.SetStreamHandler(ProtocolAdvert, func(st network.Stream) {
		defer st.Close()
		_, _ = st.Write(raw)
	})
}

func framed(env []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(env)))
	return append(out, env...)
}

// TestBadAdvertsRefused runs rogue nodes in a loopback cluster, each serving
// a different bad advert under a genuine provider record, and checks that a
// fresh client refuses each for the right reason and still finds the honest
// nodes.
func TestBadAdvertsRefused(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	nodes := cluster(t, ctx, 12, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	publishAll(t, ctx, nodes)
	honest, rogues := nodes[:6], nodes[6:]

	// Rogue 0: tampered signature. Rogue 1: serves honest node 0's advert
	// (claims someone else's key). Rogue 2: expired. Rogue 3: oversized
	// length. Rogue 4: no advert. Rogue 5: replay of its own older advert.
	env0 := honest[0].s.own.env
	mine := func(i int, mod func(*Advert)) []byte {
		r := rogues[i]
		r.s.mu.Lock()
		ad := r.s.own.signed.Clone()
		r.s.mu.Unlock()
		mod(&ad)
		env, err := SignAdvert(&ad, r.priv)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	tampered := bytes.Clone(rogues[0].s.own.env)
	tampered[len(tampered)-3] ^= 0xff
	expired := mine(2, func(a *Advert) { a.Expiry = time.Now().Add(-time.Minute).Truncate(time.Second) })
	old := mine(5, func(a *Advert) { a.Seq = 1 })
	raws := [][]byte{
		framed(tampered),
		framed(env0),
		framed(expired),
		binary.BigEndian.AppendUint32(nil, MaxEnvelopeSize+1),
		framed(nil),
		framed(old),
	}
	wantErr := []error{ErrBadSignature, ErrKeyMismatch, ErrExpired, ErrTooLarge, ErrNoAdvert, ErrReplay}

	ch, cpriv := loopbackHost(t, nil)
	client := startService(t, ctx, ch, cpriv, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	// The client saw rogue 5's current advert before it turned bad.
	if _, err := client.fetch(ctx, rogues[5].info()); err != nil {
		t.Fatal(err)
	}
	for i, r := range rogues {
		serveRaw(r.h, raws[i])
	}
	for i, r := range rogues {
		_, err := client.fetch(ctx, r.info())
		if !errors.Is(err, wantErr[i]) {
			t.Errorf("rogue %d: err = %v, want %v", i, err, wantErr[i])
		}
	}
	want := map[peer.ID]bool{}
	for _, nd := range honest {
		want[nd.h.ID()] = true
	}
	got, err := findAll(ctx, client, RoleRelay, want)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rogues[:5] {
		if _, ok := got[r.h.ID()]; ok {
			t.Errorf("rogue %s advert accepted", r.h.ID())
		}
	}
	if a, ok := got[rogues[5].h.ID()]; ok && a.Seq == 1 {
		t.Error("replayed advert accepted")
	}
}

// TestProviderFloodBounded: 40 identities provide the relay key and serve
// nothing; a client still finds every honest node, remembers at most
// maxBadPeers failures and stores no advert for them; a DHT server with a
// small record cap refuses records beyond it.
func TestProviderFloodBounded(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	mn, nodes := mocknetCluster(t, ctx, 10)
	publishAll(t, ctx, nodes)
	// A capped server joins and will be among those asked to store.
	capped := func() *node {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		if err := mn.LinkAll(); err != nil {
			t.Fatal(err)
		}
		return &node{h: h, priv: h.Peerstore().PrivKey(h.ID())}
	}()
	capped.s = startService(t, ctx, capped.h, capped.priv, Config{DHTServer: true, MaxDHTRecords: 20, Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	for i := 0; i < 40; i++ {
		h, err := mn.GenPeer()
		if err != nil {
			t.Fatal(err)
		}
		if err := mn.LinkAll(); err != nil {
			t.Fatal(err)
		}
		// Bootstrapping from the capped server alone puts it in every
		// flooder's routing table, so it is always among those asked.
		s := startService(t, ctx, h, nil, Config{Bootstrap: []peer.AddrInfo{capped.info()}})
		d, _ := s.running()
		for _, k := range []string{"relay", "exit"} {
			if err := d.Provide(ctx, roleKey(Role(k)), true); err != nil {
				t.Fatal(err)
			}
		}
		// Also flood the capped server directly with junk keys.
		// 40 x 10 records exceed the DHT's 256-record write buffer, so
		// they reach the store.
		for j := 0; j < 8; j++ {
			_ = d.Provide(ctx, nameKey(string(rune('a'+i))+string(rune('a'+j))), true)
		}
	}
	if n := capped.s.store.len(); n != 20 {
		t.Fatalf("capped DHT store holds %d records, want it full at its cap of 20", n)
	}
	ch, err := mn.GenPeer()
	if err != nil {
		t.Fatal(err)
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	client := startService(t, ctx, ch, ch.Peerstore().PrivKey(ch.ID()), Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	want := map[peer.ID]bool{}
	for _, nd := range nodes {
		want[nd.h.ID()] = true
	}
	if _, err := findAll(ctx, client, RoleRelay, want); err != nil {
		t.Fatal(err)
	}
	if k := len(client.Known()); k != len(nodes) {
		t.Fatalf("client knows %d peers, want %d honest", k, len(nodes))
	}
	client.mu.Lock()
	bad := len(client.bad)
	client.mu.Unlock()
	if bad == 0 || bad > maxBadPeers {
		t.Fatalf("negative cache holds %d", bad)
	}
}

// TestPriceChangeAndExpiry: a node that changes its price is seen at the new
// price after it publishes again, the old advert is then refused as a
// replay, and a client whose clock is past a node's expiry ignores it.
func TestPriceChangeAndExpiry(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	nodes := cluster(t, ctx, 12, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	publishAll(t, ctx, nodes)
	short := testAdvert(4, 14)
	short.Expiry = time.Now().Add(time.Hour).Truncate(time.Second)
	if err := nodes[4].s.Publish(ctx, short); err != nil {
		t.Fatal(err)
	}
	ch, cpriv := loopbackHost(t, nil)
	client := startService(t, ctx, ch, cpriv, Config{Bootstrap: []peer.AddrInfo{nodes[0].info()}})
	target := nodes[7]
	want := map[peer.ID]bool{target.h.ID(): true}
	got, err := findAll(ctx, client, RoleRelay, want)
	if err != nil {
		t.Fatal(err)
	}
	if p := got[target.h.ID()].Price(RoleRelay); p != 17 {
		t.Fatalf("price %d, want 17", p)
	}
	oldEnv := bytes.Clone(target.s.own.env)

	if err := target.s.Publish(ctx, testAdvert(7, 99)); err != nil {
		t.Fatal(err)
	}
	got, err = findAll(ctx, client, RoleRelay, want)
	if err != nil {
		t.Fatal(err)
	}
	if p := got[target.h.ID()].Price(RoleRelay); p != 99 {
		t.Fatalf("after republish price %d, want 99", p)
	}
	for _, ps := range client.Known() {
		if ps.Peer == target.h.ID() && ps.Prices[RoleRelay] != 99 {
			t.Fatalf("Known shows price %d", ps.Prices[RoleRelay])
		}
	}
	if _, err := client.accept(oldEnv, target.h.ID(), nil); !errors.Is(err, ErrReplay) {
		t.Fatalf("old advert: err = %v, want ErrReplay", err)
	}

	// A client two hours ahead: node 4's one-hour advert is expired.
	ch2, cpriv2 := loopbackHost(t, nil)
	late := startService(t, ctx, ch2, cpriv2, Config{
		Bootstrap: []peer.AddrInfo{nodes[0].info()},
		Now:       func() time.Time { return time.Now().Add(2 * time.Hour) },
	})
	want = map[peer.ID]bool{}
	for i, nd := range nodes {
		if i != 4 {
			want[nd.h.ID()] = true
		}
	}
	got, err = findAll(ctx, late, RoleRelay, want)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got[nodes[4].h.ID()]; ok {
		t.Fatal("expired advert used")
	}
}

// TestGuardsSurviveRestart: guards chosen by one Service are the guards of
// a new Service on the same cache directory, which also starts with the
// cached adverts.
func TestGuardsSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	h, _ := loopbackHost(t, nil)
	now := func() time.Time { return testEpoch }
	open := func() *Service {
		s, err := New(h, nil, Config{CacheDir: dir, Now: now, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()
	for i := 0; i < 40; i++ {
		roles := []Role{RoleRelay}
		if i%4 == 0 {
			roles = append(roles, RoleExit)
		}
		ad, priv := synthAdvert(t, i, fmt.Sprintf("30.%d.0.1", i), roles, nil)
		env, err := SignAdvert(&ad, priv)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.accept(env, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	first := map[peer.ID]bool{}
	for i := 0; i < 50; i++ {
		path, err := s.SelectPath(ctx, PathRequest{Final: RoleExit})
		if err != nil {
			t.Fatal(err)
		}
		first[path[0].Peer] = true
	}
	guards := s.Guards()
	if len(guards) != 3 {
		t.Fatalf("%d guards, want 3", len(guards))
	}
	isGuard := map[peer.ID]bool{}
	for _, g := range guards {
		isGuard[g.Peer] = true
	}
	for p := range first {
		if !isGuard[p] {
			t.Fatal("first hop outside the guard set")
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal("second Close:", err)
	}

	s2 := open()
	t.Cleanup(func() { s2.Close() })
	if k := len(s2.Known()); k != 40 {
		t.Fatalf("restarted service knows %d adverts, want 40", k)
	}
	g2 := s2.Guards()
	if len(g2) != len(guards) {
		t.Fatalf("guards after restart %v, before %v", g2, guards)
	}
	for i := range g2 {
		if g2[i].Peer != guards[i].Peer {
			t.Fatalf("guard %d changed across restart", i)
		}
	}
	for i := 0; i < 50; i++ {
		path, err := s2.SelectPath(ctx, PathRequest{Final: RoleExit})
		if err != nil {
			t.Fatal(err)
		}
		if !isGuard[path[0].Peer] {
			t.Fatal("first hop after restart is not an old guard")
		}
	}
	// A failing guard is skipped (not dropped) while it is in backoff.
	s2.Report(g2[0].Peer, false)
	for i := 0; i < 20; i++ {
		path, err := s2.SelectPath(ctx, PathRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if path[0].Peer == g2[0].Peer {
			t.Fatal("failing guard used")
		}
	}
	if s2.Guards()[0].Peer != g2[0].Peer {
		t.Fatal("failing guard dropped from the list")
	}
}
