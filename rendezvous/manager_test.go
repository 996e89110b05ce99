package rendezvous

import (
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
)

// TestManagerServiceTable: Publish of a key that cannot be published yet
// (no rendezvous-role node known) returns when ctx ends with Published
// false and keeps trying; Services lists it; a second Publish of the key
// is refused; Unpublish removes it (by address or id) and refuses an
// unknown one; Dial of a bad address fails with ErrBadAddress before
// anything is asked of the network.
func TestManagerServiceTable(t *testing.T) {
	t.Parallel()
	noNodes := errors.New("no nodes")
	asked := 0
	m, err := New(Config{
		Build: func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) {
			return nil, noNodes
		},
		Pick: func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, noNodes },
		Find: func(context.Context, [32]byte, int) ([]circuit.HopInfo, error) {
			asked++
			return nil, noNodes
		},
		RendezvousPoint: noRendezvousPoint,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	k := testKey(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	info, err := m.Publish(ctx, k, []Port{{Virtual: 80, Target: "127.0.0.1:8080"}})
	if err != nil || info.Published || info.Address != k.Address() {
		t.Fatalf("Publish: %+v %v", info, err)
	}
	if _, err := m.Publish(t.Context(), k, []Port{{Virtual: 80, Target: "127.0.0.1:8080"}}); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second Publish: %v", err)
	}
	if _, err := m.Publish(t.Context(), testKey(t), nil); err == nil {
		t.Fatal("Publish without ports accepted")
	}
	if s := m.Services(); len(s) != 1 || s[0].ServiceID != k.ServiceID() || s[0].Ports[0].Virtual != 80 {
		t.Fatalf("Services: %+v", s)
	}
	if err := m.Unpublish(k.ServiceID()); err != nil {
		t.Fatal(err)
	}
	if err := m.Unpublish(k.Address()); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("Unpublish twice: %v", err)
	}
	if len(m.Services()) != 0 {
		t.Fatal("service still listed")
	}
	if _, err := m.Dial(t.Context(), "aaaa.onion", 80); !errors.Is(err, ErrBadAddress) || asked != 0 {
		t.Fatalf("Dial of a bad address: %v (asked the network %d times)", err, asked)
	}
	if _, err := m.Dial(t.Context(), testKey(t).Address(), 80); !errors.Is(err, ErrDescriptorNotFound) {
		t.Fatalf("Dial with no HSDir: %v", err)
	}
}

func noRendezvousPoint(peer.ID) (circuit.HopInfo, bool) { return circuit.HopInfo{}, false }

// TestLoopbackDialerRefusesOthers: the default target dialer refuses
// anything but loopback.
func TestLoopbackDialerRefusesOthers(t *testing.T) {
	t.Parallel()
	d := loopbackDialer(false)
	for _, target := range []string{"192.0.2.1:80", "example.com:80", "[2001:db8::1]:80"} {
		if _, err := d(t.Context(), target); err == nil {
			t.Errorf("%s dialled", target)
		}
	}
}

// TestServiceReplayCacheHoldsOnlyAuthentic: the service remembers an
// introduction's ephemeral key only once it decrypted; garbage (which an
// intro point can write down the held stream at any rate, past its own
// rate limit and proof of work) neither pushes a real introduction out of
// the cache, so that it could be replayed and make the service build (and
// pay for) another rendezvous circuit, nor, sent first with the real
// message's ephemeral key, makes the real one look like a replay.
func TestServiceReplayCacheHoldsOnlyAuthentic(t *testing.T) {
	t.Parallel()
	fail := errors.New("no network in this test")
	m, err := New(Config{
		Build:           func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, fail },
		Pick:            func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, fail },
		Find:            func(context.Context, [32]byte, int) ([]circuit.HopInfo, error) { return nil, fail },
		RendezvousPoint: noRendezvousPoint,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	k := testKey(t)
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s := &service{m: m, key: k, static: static, ctx: ctx, cancel: cancel,
		ports:  []Port{{Virtual: 80, Target: "127.0.0.1:1"}},
		replay: newReplayCache(serviceReplayCap, time.Hour)}
	var enc [32]byte
	copy(enc[:], static.Public)
	id := [introIDLen]byte{7}
	// Port 81 is not published: an authentic introduction is refused
	// after decryption, before any circuit is built.
	msg, _, err := newIntroduction(enc, k.Public(), id, &introPayload{Port: 81, RVPeer: []byte("rv")})
	if err != nil {
		t.Fatal(err)
	}
	forged := append([]byte(nil), msg...)
	forged[len(forged)-1] ^= 1 // same ephemeral key, does not decrypt
	if err := s.rendezvous(id, forged, func() {}); !errors.Is(err, ErrBadIntroduce) {
		t.Fatalf("forged introduction: %v", err)
	}
	if err := s.rendezvous(id, msg, func() {}); err == nil || errors.Is(err, ErrReplay) {
		t.Fatalf("first real introduction after a forgery with its key: %v", err)
	}
	garbage := make([]byte, 64)
	for range serviceReplayCap {
		rand.Read(garbage)
		if err := s.rendezvous(id, garbage, func() {}); !errors.Is(err, ErrBadIntroduce) {
			t.Fatalf("garbage: %v", err)
		}
	}
	if err := s.rendezvous(id, msg, func() {}); !errors.Is(err, ErrReplay) {
		t.Fatalf("replay after a flood of garbage: %v", err)
	}
}

// TestServiceRateLimitsEachIntroPoint: a service answers at most the
// intro point's burst of introductions from one held point at once, even
// when the point (malicious, skipping its own limit and proof of work)
// writes more: each answer would be a rendezvous circuit the service pays.
func TestServiceRateLimitsEachIntroPoint(t *testing.T) {
	t.Parallel()
	fail := errors.New("no network in this test")
	now := time.Unix(1_800_000_000, 0)
	m, err := New(Config{
		Build:           func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, fail },
		Pick:            func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, fail },
		Find:            func(context.Context, [32]byte, int) ([]circuit.HopInfo, error) { return nil, fail },
		Now:             func() time.Time { return now },
		RendezvousPoint: noRendezvousPoint,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	ctx, cancel := context.WithCancel(t.Context())
	s := &service{m: m, key: testKey(t), static: static, ctx: ctx, cancel: cancel,
		ports:  []Port{{Virtual: 80, Target: "127.0.0.1:1"}},
		replay: newReplayCache(serviceReplayCap, time.Hour),
		sem:    make(chan struct{}, 1000)}
	defer func() { cancel(); s.wg.Wait() }()
	bucket := newTokenBucket(serviceIntroRate, serviceIntroBurst, now)
	started := 0
	for range 10 * serviceIntroBurst {
		if s.dispatch([introIDLen]byte{1}, make([]byte, 64), [powNonceLen]byte{}, bucket) {
			started++
		}
	}
	if started != serviceIntroBurst {
		t.Fatalf("%d introductions answered at once, want the burst %d", started, serviceIntroBurst)
	}
}

// TestServiceChecksProofOfWork: a service that asks for proof of work
// checks it itself on every introduction its intro point forwards, against
// its own effort: one forwarded without a solution (an intro point that
// skips its check or floods in collusion) is dropped and counted before it
// takes a token of the point's rate limit or a rendezvous slot, and one
// with a solution goes on.
func TestServiceChecksProofOfWork(t *testing.T) {
	t.Parallel()
	fail := errors.New("no network in this test")
	now := time.Unix(1_800_000_000, 0)
	const effort = 10
	m, err := New(Config{
		Build:           func(context.Context, circuit.HopInfo, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, fail },
		Pick:            func(context.Context, int, []peer.ID) ([]circuit.HopInfo, error) { return nil, fail },
		Find:            func(context.Context, [32]byte, int) ([]circuit.HopInfo, error) { return nil, fail },
		Now:             func() time.Time { return now },
		RendezvousPoint: noRendezvousPoint,
		PoWEffort:       effort,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	ctx, cancel := context.WithCancel(t.Context())
	k := testKey(t)
	s := &service{m: m, key: k, static: static, ctx: ctx, cancel: cancel, addr: k.Address(),
		ports:  []Port{{Virtual: 80, Target: "127.0.0.1:1"}},
		replay: newReplayCache(serviceReplayCap, time.Hour),
		sem:    make(chan struct{}, 1000)}
	defer func() { cancel(); s.wg.Wait() }()
	id := [introIDLen]byte{1}
	bucket := newTokenBucket(serviceIntroRate, serviceIntroBurst, now)
	var solved [][]byte
	var nonces [][powNonceLen]byte
	for range serviceIntroBurst {
		msg := make([]byte, 64)
		rand.Read(msg)
		n, err := solvePoW(t.Context(), id, msg, effort)
		if err != nil {
			t.Fatal(err)
		}
		solved, nonces = append(solved, msg), append(nonces, n)
	}
	// A flood with no work: every one dropped, none takes a token.
	for i := range 5 * serviceIntroBurst {
		msg := make([]byte, 64)
		rand.Read(msg)
		var bad [powNonceLen]byte
		for powOK(id, msg, bad, effort) {
			bad[0]++
		}
		if s.dispatch(id, msg, bad, bucket) {
			t.Fatalf("introduction %d without proof of work answered", i)
		}
	}
	// A solution of another message does not carry over.
	if s.dispatch(id, append([]byte{0}, solved[0]...), nonces[0], bucket) {
		t.Fatal("a nonce solved for another message accepted")
	}
	if got := s.info().PoWRefused; got != 5*serviceIntroBurst+1 {
		t.Fatalf("PoWRefused %d, want %d", got, 5*serviceIntroBurst+1)
	}
	for i, msg := range solved {
		if !s.dispatch(id, msg, nonces[i], bucket) {
			t.Fatalf("introduction %d with proof of work dropped (the flood took its token?)", i)
		}
	}
	waitFor(t, func() bool { return s.info().FailedIntroductions == uint64(len(solved)) })
}
