package discovery

import (
	"context"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// tarpit is a loopback TCP listener that accepts and never answers: a
// provider that costs a client a dial and a handshake timeout.
type tarpit struct {
	ln      net.Listener
	accepts atomic.Int64
	mu      sync.Mutex
	conns   []net.Conn
}

func newTarpit(t testing.TB) *tarpit {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tarpit{ln: ln}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tp.accepts.Add(1)
			tp.mu.Lock()
			tp.conns = append(tp.conns, c)
			tp.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		tp.mu.Lock()
		for _, c := range tp.conns {
			c.Close()
		}
		tp.mu.Unlock()
	})
	return tp
}

func (tp *tarpit) addr() ma.Multiaddr {
	a := tp.ln.Addr().(*net.TCPAddr)
	return ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(a.Port))
}

// stuff makes nd's DHT server hold n provider records for role, each a
// fresh identity whose only address is the tarpit.
func stuff(t testing.TB, ctx context.Context, nd *node, role Role, n int, tp *tarpit) {
	t.Helper()
	for i := 0; i < n; i++ {
		_, pub, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		id, _ := peer.IDFromPublicKey(pub)
		if err := nd.s.dht.ProviderStore().AddProvider(ctx, roleKey(role).Hash(), peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{tp.addr()}}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTarpitProvidersBounded: one DHT server on loopback answers the relay
// key with 600 tarpit providers. A fresh client still finds every honest
// relay in one Find, dials at most maxPerResponder of the tarpits, and the
// lookup costs at most about one candidateTimeout more than without the
// stuffing server (the times are logged, not asserted).
func TestTarpitProvidersBounded(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	nodes := cluster(t, ctx, 7, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(t, nil) })
	honest, stuffer := nodes[:6], nodes[6]
	publishAll(t, ctx, honest)
	want := map[peer.ID]bool{}
	for _, nd := range honest {
		want[nd.h.ID()] = true
	}
	lookup := func() (time.Duration, int) {
		h, priv := loopbackHost(t, nil)
		c := startService(t, ctx, h, priv, Config{Bootstrap: []peer.AddrInfo{honest[0].info()}})
		begin := time.Now()
		ads, err := c.Find(ctx, RoleRelay, 0)
		took := time.Since(begin)
		if err != nil {
			t.Fatal(err)
		}
		found := 0
		for _, a := range ads {
			if want[a.Peer] {
				found++
			}
		}
		return took, found
	}
	clean, foundClean := lookup()

	tp := newTarpit(t)
	stuff(t, ctx, stuffer, RoleRelay, 600, tp)
	stuffed, foundStuffed := lookup()
	t.Logf("fresh client's relay lookup: %v without, %v with a server stuffing 600 tarpit providers (ratio %.1f); honest found %d/%d and %d/%d; tarpit dials %d",
		clean.Round(time.Millisecond), stuffed.Round(time.Millisecond), float64(stuffed)/float64(clean), foundClean, len(honest), foundStuffed, len(honest), tp.accepts.Load())
	if foundStuffed != len(honest) {
		t.Fatalf("with the stuffing server the client found %d of %d honest relays", foundStuffed, len(honest))
	}
	if n := tp.accepts.Load(); n > maxPerResponder {
		t.Fatalf("client dialled %d tarpit providers, bound %d", n, maxPerResponder)
	}
}

// BenchmarkFirstPathStuffedDHT: a fresh client's first SelectPath (which
// runs the relay lookup) among 6 honest relays, without and with one DHT
// server answering the relay key with 600 tarpit providers. Compare the
// two ns/op: the ratio is what one stuffing server costs the first circuit
// (docs/THREAT_MODEL.md). Run with -benchtime=3x; each op is a new client.
func BenchmarkFirstPathStuffedDHT(b *testing.B) {
	for _, stuffed := range []bool{false, true} {
		b.Run(map[bool]string{false: "clean", true: "stuffed-600"}[stuffed], func(b *testing.B) {
			ctx := testCtx(b, 10*time.Minute)
			nodes := cluster(b, ctx, 7, ModePrivate, func() (host.Host, crypto.PrivKey) { return loopbackHost(b, nil) })
			honest, stuffer := nodes[:6], nodes[6]
			publishAll(b, ctx, honest)
			var tp *tarpit
			if stuffed {
				tp = newTarpit(b)
				stuff(b, ctx, stuffer, RoleRelay, 600, tp)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				h, priv := loopbackHost(b, nil)
				c := startService(b, ctx, h, priv, Config{Bootstrap: []peer.AddrInfo{honest[0].info()}})
				b.StartTimer()
				if _, err := c.SelectPath(ctx, PathRequest{Hops: 3, Final: RoleRelay}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if tp != nil {
				b.ReportMetric(float64(tp.accepts.Load())/float64(b.N), "tarpit-dials/op")
			}
		})
	}
}
