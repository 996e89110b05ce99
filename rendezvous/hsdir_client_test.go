package rendezvous

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
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

// lockedBuffer is a log sink for several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDescriptorNewestOfParallelHSDirs: the client asks every HSDir found
// at once and keeps the valid descriptor with the highest revision. A
// stale HSDir (an older, validly signed revision, answering first), a
// forging one (bad signature), and a silent one (never answers) neither
// win nor hold the lookup past DescFetchTimeout: it returns the honest
// HSDir's newest descriptor long before the test's own deadline. A
// descriptor of another key (validly signed, by another service) is
// ignored as forged too, and each forgery is logged with its HSDir.
func TestDescriptorNewestOfParallelHSDirs(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	k := testKey(t)
	stale := signedDescriptor(t, k, now, 5, 1)
	newest := signedDescriptor(t, k, now, 9, 2)
	forged := signedDescriptor(t, k, now, 99, 3)
	forged[len(forged)-1] ^= 1
	otherKey := signedDescriptor(t, testKey(t), now, 100, 4)
	fail := errors.New("no network in this test")
	var asked int
	var logs lockedBuffer
	m, err := New(Config{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Build:  func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, fail },
		Pick:   func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, fail },
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
	// Only invalid or silent HSDirs: unavailable (not "not found", which
	// would send the name to a Tor gateway), within the bound too.
	m.forgetDescriptor(k.Public())
	m.fetch = func(ctx context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
		switch dir.Peer {
		case "forged":
			return forged, nil
		case "stale": // here: another service's real descriptor
			return otherKey, nil
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if _, err := m.descriptor(ctx, k.Public()); !errors.Is(err, ErrDescriptorUnavailable) || ctx.Err() != nil {
		t.Fatalf("only bad HSDirs: %v (outer ctx %v)", err, ctx.Err())
	}
	for _, why := range []string{"signature", "signed by a key not blinded from this address"} {
		if !strings.Contains(logs.String(), `ignored as forged" subsys=rendezvous hsdir=`) || !strings.Contains(logs.String(), why+`"`) {
			t.Errorf("no forgery logged for %q:\n%s", why, logs.String())
		}
	}
	if strings.Contains(logs.String(), k.ServiceID()) {
		t.Error("the log names the onion address")
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
	if !s.dispatch(id, intro(unknown), [powNonceLen]byte{}, bucket) {
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

// TestDescriptorUnreachableIsNotNotFound: a lookup whose HSDirs (found in
// the DHT: the service lives on co-infuse) could not be asked — circuits
// that fail, as when the wallet holds none of a paid HSDir's vouchers, or
// HSDirs that never answer — is ErrDescriptorUnavailable, not
// ErrDescriptorNotFound, for node falls back to a Tor gateway only on
// the latter and would name the service to it. Only when more than half
// the HSDirs asked answer "none" (or serve a descriptor that does not
// verify against the address: a forgery is as good as absent) is it
// ErrDescriptorNotFound. Found in review: every failed fetch counted as
// "not found".
func TestDescriptorUnreachableIsNotNotFound(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	k := testKey(t)
	forged := signedDescriptor(t, k, now, 99, 3)
	forged[len(forged)-1] ^= 1
	notHeld := errors.New("paid circuit: hop 3: vouchers not held")
	m := refusingLookupManager(t, now, notHeld, nil, []circuit.HopInfo{{Peer: "a"}, {Peer: "b"}, {Peer: "c"}})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	type fetchFunc = func(ctx context.Context, dir circuit.HopInfo, idx [32]byte) ([]byte, error)
	var cur atomic.Pointer[fetchFunc]
	m.fetch = func(ctx context.Context, dir circuit.HopInfo, idx [32]byte) ([]byte, error) {
		return (*cur.Load())(ctx, dir, idx)
	}
	for _, tc := range []struct {
		name  string
		fetch fetchFunc
		found bool // ErrDescriptorNotFound (else ErrDescriptorUnavailable)
	}{
		{"no circuit to any HSDir", m.fetchDescriptor, false},
		{"silent HSDirs", func(ctx context.Context, _ circuit.HopInfo, _ [32]byte) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}, false},
		{"one says none, the others unreachable", func(_ context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
			if dir.Peer == "a" {
				return nil, errNoDescriptor
			}
			return nil, notHeld
		}, false},
		{"a forged descriptor and none", func(_ context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
			if dir.Peer == "a" {
				return forged, nil
			}
			return nil, errNoDescriptor
		}, true},
		{"two forged, one unreachable", func(_ context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
			if dir.Peer == "c" {
				return nil, notHeld
			}
			return forged, nil
		}, true},
		{"every HSDir says none", func(context.Context, circuit.HopInfo, [32]byte) ([]byte, error) {
			return nil, errNoDescriptor
		}, true},
	} {
		// A fetch of the previous case may still be starting (the silent
		// HSDirs' lookup returns at its timeout, not when they do): it
		// reads m.fetch, so m.fetch is set once and picks this case's
		// func through an atomic pointer.
		cur.Store(&tc.fetch)
		_, err := m.descriptor(ctx, k.Public())
		if got := errors.Is(err, ErrDescriptorNotFound); got != tc.found {
			t.Errorf("%s: %v: ErrDescriptorNotFound %v, want %v", tc.name, err, got, tc.found)
		}
		if got := errors.Is(err, ErrDescriptorUnavailable); got == tc.found {
			t.Errorf("%s: %v: ErrDescriptorUnavailable %v, want %v", tc.name, err, got, !tc.found)
		}
	}
	if ctx.Err() != nil {
		t.Fatal("a lookup outlived its fetch timeout")
	}
}

// TestAnnouncersCannotTurnUnavailableIntoNotFound: HSDirs found only by
// their DHT provider records (the fallback after the ring) are
// self-announced: anyone can announce an index. When the ring's HSDirs
// could not be asked, announcers that answer "none" must not make the
// lookup ErrDescriptorNotFound, which sends the address to a Tor gateway:
// an attacker who makes the ring unreachable for a client (a paid HSDir
// it holds no vouchers of, a flood) and announces the index would push a
// co-infuse service's name to Tor. Found in review: any "not found" of
// the fallback won over the ring's "unavailable".
func TestAnnouncersCannotTurnUnavailableIntoNotFound(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	k := testKey(t)
	notHeld := errors.New("paid circuit: hop 3: vouchers not held")
	ring := []circuit.HopInfo{{Peer: "r1"}, {Peer: "r2"}, {Peer: "r3"}, {Peer: "r4"}}
	m := refusingLookupManager(t, now, notHeld, ring, []circuit.HopInfo{{Peer: "s1"}, {Peer: "s2"}, {Peer: "s3"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name     string
		ringNone bool // the ring's HSDirs answer "none" (else unreachable)
		found    bool
	}{
		{"ring unreachable, announcers say none", false, false},
		{"ring says none, announcers say none", true, true},
	} {
		m.forgetDescriptor(k.Public())
		m.fetch = func(_ context.Context, dir circuit.HopInfo, _ [32]byte) ([]byte, error) {
			if dir.Peer[0] == 'r' && !tc.ringNone {
				return nil, notHeld
			}
			return nil, errNoDescriptor
		}
		_, err := m.descriptor(ctx, k.Public())
		if got := errors.Is(err, ErrDescriptorNotFound); got != tc.found {
			t.Errorf("%s: %v: ErrDescriptorNotFound %v, want %v", tc.name, err, got, tc.found)
		}
		if got := errors.Is(err, ErrDescriptorUnavailable); got == tc.found {
			t.Errorf("%s: %v: ErrDescriptorUnavailable %v, want %v", tc.name, err, got, !tc.found)
		}
	}
}

// refusingLookupManager is a Manager at now whose circuits all fail with
// refused, whose ring view is ring (nil: no HSDirView) and whose DHT
// announcers of any index are announced; tests set m.fetch to play the
// HSDirs. Closed when the test ends.
func refusingLookupManager(t *testing.T, now time.Time, refused error, ring, announced []circuit.HopInfo) *Manager {
	t.Helper()
	cfg := Config{
		Build: func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) {
			return nil, refused
		},
		Pick: func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, refused },
		Find: func(context.Context, [32]byte, int) ([]circuit.HopInfo, error) {
			return announced, nil
		},
		RendezvousPoint:  noRendezvousPoint,
		DescFetchTimeout: 300 * time.Millisecond,
		Now:              func() time.Time { return now },
	}
	if ring != nil {
		cfg.HSDirView = func(context.Context) ([]circuit.HopInfo, error) { return ring, nil }
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}
