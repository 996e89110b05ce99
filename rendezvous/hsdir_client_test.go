package rendezvous

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ptest "github.com/libp2p/go-libp2p/core/test"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/circuit"
)

// signedDescriptor is a valid descriptor of k for now's period with rev.
func signedDescriptor(t *testing.T, k Key, now time.Time, rev uint64, intro byte) []byte {
	t.Helper()
	p := PeriodOf(now, DefaultPeriodLen)
	d := &Descriptor{Period: p, PeriodLen: DefaultPeriodLen, Revision: rev, Expires: now.Add(time.Hour),
		Intros: []IntroPoint{{ID: [16]byte{intro}, Peer: []byte("peer-one"), OnionKey: [32]byte{2}}}}
	d.EncKey[0] = 9
	raw, err := encodeDescriptor(d, k.Public(), signerOf(k).blind(p, DefaultPeriodLen))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDescriptorNewestOfParallelHSDirs: the client asks every HSDir found
// at once and keeps the valid descriptor with the highest revision. A
// stale HSDir (an older, validly signed revision, answering first), a
// forging one (bad signature), and a silent one (never answers) neither
// win nor hold the lookup past DescFetchTimeout: it returns the honest
// HSDir's newest descriptor long before the test's own deadline.
func TestDescriptorNewestOfParallelHSDirs(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	k := testKey(t)
	stale := signedDescriptor(t, k, now, 5, 1)
	newest := signedDescriptor(t, k, now, 9, 2)
	forged := signedDescriptor(t, k, now, 99, 3)
	forged[len(forged)-1] ^= 1
	fail := errors.New("no network in this test")
	var asked int
	m, err := New(Config{
		Build: func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, fail },
		Pick:  func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, fail },
		Find: func(_ context.Context, _ [32]byte, max int) ([]circuit.HopInfo, error) {
			asked = max
			return []circuit.HopInfo{{Peer: "silent"}, {Peer: "stale"}, {Peer: "forged"}, {Peer: "honest"}}, nil
		},
		RendezvousPoint:  noRendezvousPoint,
		DescFetchTimeout: 300 * time.Millisecond,
		Now:              func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	staleDone := make(chan struct{})
	var silentCancelled atomic.Bool
	m.fetch = func(ctx context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
		switch dir.Peer {
		case "stale":
			defer close(staleDone)
			return stale, nil
		case "forged":
			return forged, nil
		case "honest":
			<-staleDone // the stale answer arrives first
			return newest, nil
		default: // silent: holds its stream until the client gives up
			<-ctx.Done()
			silentCancelled.Store(true)
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	d, err := m.descriptor(ctx, k.Public())
	if err != nil {
		t.Fatal(err)
	}
	if d.Revision != 9 || d.Intros[0].ID[0] != 2 {
		t.Fatalf("got revision %d (intro %d), want the newest, 9", d.Revision, d.Intros[0].ID[0])
	}
	if ctx.Err() != nil {
		t.Fatal("the silent HSDir held the lookup past its timeout")
	}
	waitFor(t, silentCancelled.Load)
	if asked < 6 {
		t.Fatalf("asked discovery for %d HSDirs, want at least 6", asked)
	}
	// Only invalid or silent HSDirs: not found, within the bound too.
	m.forgetDescriptor(k.Public())
	m.fetch = func(ctx context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
		if dir.Peer == "forged" {
			return forged, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if _, err := m.descriptor(ctx, k.Public()); !errors.Is(err, ErrDescriptorNotFound) || ctx.Err() != nil {
		t.Fatalf("only bad HSDirs: %v (outer ctx %v)", err, ctx.Err())
	}
}

// TestServiceBuildsOnlyToKnownRendezvousPoint: a service builds its
// rendezvous circuit only to a node its own discovery knows with the
// rendezvous role, with that advert's addresses and onion key, not the
// ones the client wrote in the introduction; an introduction naming any
// other node is refused before any circuit is built and counted as a
// failed introduction.
func TestServiceBuildsOnlyToKnownRendezvousPoint(t *testing.T) {
	t.Parallel()
	known, _ := ptest.RandPeerID()
	unknown, _ := ptest.RandPeerID()
	advAddr := ma.StringCast("/ip4/127.0.0.1/tcp/4001")
	advHop := circuit.HopInfo{Peer: known, OnionKey: [32]byte{0xAD}, Addrs: []ma.Multiaddr{advAddr}}
	fail := errors.New("no network in this test")
	builds := make(chan circuit.HopInfo, 16)
	m, err := New(Config{
		Build: func(_ context.Context, last circuit.HopInfo, _ []circuit.HopInfo) (*circuit.Circuit, error) {
			builds <- last
			return nil, fail
		},
		Pick: func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, fail },
		Find: func(context.Context, [32]byte, int) ([]circuit.HopInfo, error) { return nil, fail },
		RendezvousPoint: func(p peer.ID) (circuit.HopInfo, bool) {
			if p == known {
				return advHop, true
			}
			return circuit.HopInfo{}, false
		},
		DialTarget: func(context.Context, string) (net.Conn, error) { return nil, fail },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	k := testKey(t)
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	ctx, cancel := context.WithCancel(t.Context())
	s := &service{m: m, key: k, static: static, ctx: ctx, cancel: cancel, addr: k.Address(),
		ports:  []Port{{Virtual: 80, Target: "127.0.0.1:1"}},
		replay: newReplayCache(serviceReplayCap, time.Hour),
		sem:    make(chan struct{}, 8)}
	defer func() { cancel(); s.wg.Wait() }()
	var enc [32]byte
	copy(enc[:], static.Public)
	id := [introIDLen]byte{7}
	clientAddr := ma.StringCast("/ip4/192.0.2.7/tcp/9").Bytes()
	intro := func(rv peer.ID) []byte {
		msg, _, err := newIntroduction(enc, k.Public(), id, &introPayload{Port: 80, RVPeer: []byte(rv),
			RVOnion: [32]byte{0xCC}, RVAddrs: [][]byte{clientAddr}})
		if err != nil {
			t.Fatal(err)
		}
		return msg
	}

	if err := s.rendezvous(id, intro(unknown), func() {}); !errors.Is(err, ErrBadRendezvousPoint) {
		t.Fatalf("unknown rendezvous point: %v", err)
	}
	bucket := newTokenBucket(serviceIntroRate, serviceIntroBurst, time.Now())
	if !s.dispatch(id, intro(unknown), bucket) {
		t.Fatal("introduction not dispatched")
	}
	waitFor(t, func() bool { return s.info().FailedIntroductions == 1 })
	select {
	case h := <-builds:
		t.Fatalf("built a circuit to %s for an unknown rendezvous point", h.Peer)
	default:
	}

	if err := s.rendezvous(id, intro(known), func() {}); err == nil || errors.Is(err, ErrBadRendezvousPoint) {
		t.Fatalf("known rendezvous point: %v", err)
	}
	h := <-builds
	if h.Peer != known || h.OnionKey != advHop.OnionKey || len(h.Addrs) != 1 || !h.Addrs[0].Equal(advAddr) {
		t.Fatalf("built to %s key %x addrs %v, want the advert's", h.Peer, h.OnionKey[:1], h.Addrs)
	}
}
