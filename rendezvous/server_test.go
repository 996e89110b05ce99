package rendezvous

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// serve starts one stream of kind at s, as the Mux would, and returns the
// client end.
func serve(t *testing.T, s *Server, kind string, cookie [cell.CookieLen]byte) net.Conn {
	t.Helper()
	req := circuit.BeginRequest{Service: cell.ServiceRendezvous, Target: mustTarget(kind), Cookie: cookie}
	c, err := s.Begin(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c
}

func status(t *testing.T, c net.Conn) byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		t.Fatalf("read status: %v", err)
	}
	return b[0]
}

func TestServerRefusesOtherTargets(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{})
	tg, _ := cell.ParseTarget("example.com:80")
	if err := s.Accept(circuit.BeginRequest{Target: tg}); err == nil {
		t.Fatal("accepted a target that is not the rendezvous service's")
	}
}

// TestRendezvousCookieOnce: a client cookie is spliced to the service that
// presents it, bytes flow both ways, and the same cookie is refused for
// ever after (by a client or a service); a service with an unknown cookie
// is refused.
func TestRendezvousCookieOnce(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{})
	var cookie [cookieLen]byte
	rand.Read(cookie[:])
	cl := serve(t, s, TargetRendezvous, [cell.CookieLen]byte{})
	cl.Write(append([]byte{rvClient}, cookie[:]...))
	if st := status(t, cl); st != statusOK {
		t.Fatalf("client cookie: status %d", st)
	}
	sv := serve(t, s, TargetRendezvous, [cell.CookieLen]byte{})
	go sv.Write(append(append([]byte{rvService}, cookie[:]...), "ping"...)) // net.Pipe has no buffer
	if st := status(t, sv); st != statusOK {
		t.Fatalf("service join: status %d", st)
	}
	buf := make([]byte, 4)
	cl.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(cl, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("splice service→client: %q %v", buf, err)
	}
	go cl.Write([]byte("pong"))
	sv.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(sv, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("splice client→service: %q %v", buf, err)
	}
	for _, role := range []byte{rvClient, rvService} {
		c := serve(t, s, TargetRendezvous, [cell.CookieLen]byte{})
		c.Write(append([]byte{role}, cookie[:]...))
		if st := status(t, c); st == statusOK {
			t.Fatalf("reused cookie (role %d) accepted", role)
		}
	}
	var other [cookieLen]byte
	rand.Read(other[:])
	c := serve(t, s, TargetRendezvous, [cell.CookieLen]byte{})
	c.Write(append([]byte{rvService}, other[:]...))
	if st := status(t, c); st != statusNotFound {
		t.Fatalf("service with an unknown cookie: status %d", st)
	}
}

// holdIntro registers an intro point at s over a stream whose circuit
// cookie is cc and returns the held stream and the intro ID.
func holdIntro(t *testing.T, s *Server, cc [cell.CookieLen]byte, effort uint8) (net.Conn, [introIDLen]byte, ed25519.PrivateKey) {
	t.Helper()
	return holdIntroKind(t, s, TargetIntroHold, cc, effort)
}

func holdIntroAt(t *testing.T, s *Server, kind string, cc [cell.CookieLen]byte, effort uint8) (net.Conn, [introIDLen]byte) {
	t.Helper()
	c, id, _ := holdIntroKind(t, s, kind, cc, effort)
	return c, id
}

func holdIntroKind(t *testing.T, s *Server, kind string, cc [cell.CookieLen]byte, effort uint8) (net.Conn, [introIDLen]byte, ed25519.PrivateKey) {
	t.Helper()
	auth, id := newAuthKey()
	c := serve(t, s, kind, cc)
	msg := append(append(id[:0:0], id[:]...), auth.Public().(ed25519.PublicKey)...)
	msg = append(msg, effort)
	msg = append(msg, ed25519.Sign(auth, introHoldMessage(cc, id, effort))...)
	c.Write(msg)
	if st := status(t, c); st != statusOK {
		t.Fatalf("hold: status %d", st)
	}
	return c, id, auth
}

func introduceRaw(t *testing.T, s *Server, id [introIDLen]byte, msg []byte) byte {
	return introducePoW(t, s, id, msg, [powNonceLen]byte{})
}

func introducePoW(t *testing.T, s *Server, id [introIDLen]byte, msg []byte, nonce [powNonceLen]byte) byte {
	t.Helper()
	c := serve(t, s, TargetIntroduce, [cell.CookieLen]byte{})
	out := append(id[:0:0], id[:]...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(msg)))
	out = append(out, msg...)
	go c.Write(append(out, nonce[:]...))
	return status(t, c)
}

// TestIntroPointForwardsOnceAndRateLimits: an introduction reaches the
// service holding the intro ID; the same introduction again is refused as
// a replay; past the burst, introductions are refused as rate limited; a
// hold signed for another circuit is refused.
func TestIntroPointForwardsOnceAndRateLimits(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := NewServer(ServerConfig{IntroRate: 1, IntroBurst: 3, Now: func() time.Time { return now }})
	held, id, auth := holdIntro(t, s, [cell.CookieLen]byte{7}, 0)
	got := make(chan []byte, 16)
	go func() {
		for {
			m, err := readFrame16(held, maxIntroLen)
			if err == nil {
				_, err = io.ReadFull(held, make([]byte, powNonceLen))
			}
			if err != nil {
				close(got)
				return
			}
			got <- m
		}
	}()
	msg := make([]byte, 100)
	rand.Read(msg)
	if st := introduceRaw(t, s, id, msg); st != statusOK {
		t.Fatalf("introduction: status %d", st)
	}
	if m := <-got; string(m) != string(msg) {
		t.Fatal("service got another introduction than was sent")
	}
	if st := introduceRaw(t, s, id, msg); st != statusReplay {
		t.Fatalf("replayed introduction: status %d, want replay", st)
	}
	var limited bool
	for range 5 {
		m := make([]byte, 100)
		rand.Read(m)
		if st := introduceRaw(t, s, id, m); st == statusRateLimited {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no introduction refused past the burst of 3")
	}
	now = now.Add(10 * time.Second) // the bucket refills
	m := make([]byte, 100)
	rand.Read(m)
	if st := introduceRaw(t, s, id, m); st != statusOK {
		t.Fatalf("introduction after the refill: status %d", st)
	}
	if st := introduceRaw(t, s, [introIDLen]byte{1}, m); st != statusNotFound {
		t.Fatalf("introduction to an unknown intro ID: status %d", st)
	}
	// A hold message signed for another circuit's cookie is refused.
	c := serve(t, s, TargetIntroHold, [cell.CookieLen]byte{8})
	hm := append(append(id[:0:0], id[:]...), auth.Public().(ed25519.PublicKey)...)
	hm = append(hm, 0)
	hm = append(hm, ed25519.Sign(auth, introHoldMessage([cell.CookieLen]byte{7}, id, 0))...)
	c.Write(hm)
	if st := status(t, c); st != statusRefused {
		t.Fatalf("hold replayed on another circuit: status %d", st)
	}
}

// TestHSDirStoresChecksAndServes: a valid descriptor is stored, announced
// once and served by index; an older revision, a bad signature and a
// descriptor of a far period are refused.
func TestHSDirStoresChecksAndServes(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	provided := make(chan [32]byte, 4)
	s := NewServer(ServerConfig{Now: func() time.Time { return now },
		Provide: func(_ context.Context, idx [32]byte) error { provided <- idx; return nil }})
	k := testKey(t)
	raw, p := testDescriptor(t, k, now)
	put := func(raw []byte) byte {
		c := serve(t, s, TargetDescPut, [cell.CookieLen]byte{})
		go c.Write(appendFrame16(nil, raw))
		return status(t, c)
	}
	if st := put(raw); st != statusOK {
		t.Fatalf("put: status %d", st)
	}
	b, _ := BlindPublic(k.Public(), p, DefaultPeriodLen)
	idx := Index(b, p, DefaultPeriodLen)
	if got := <-provided; got != idx {
		t.Fatal("announced another index")
	}
	if st := put(raw); st != statusReplay {
		t.Fatalf("same revision again: status %d", st)
	}
	if st := put(flip(raw, len(raw)-3)); st != statusRefused {
		t.Fatalf("bad signature: status %d", st)
	}
	far := &Descriptor{Period: p + 5, PeriodLen: DefaultPeriodLen, Revision: 9, Expires: now.Add(10 * 24 * time.Hour),
		Intros: []IntroPoint{{Peer: []byte("x")}}}
	rawFar, _ := encodeDescriptor(far, k.Public(), signerOf(k).blind(p+5, DefaultPeriodLen))
	if st := put(rawFar); st != statusRefused {
		t.Fatalf("descriptor five periods ahead: status %d", st)
	}
	c := serve(t, s, TargetDescGet, [cell.CookieLen]byte{})
	go c.Write(idx[:])
	if st := status(t, c); st != statusOK {
		t.Fatalf("get: status %d", st)
	}
	got, err := readFrame16(c, MaxDescriptorLen)
	if err != nil || string(got) != string(raw) {
		t.Fatalf("get returned other bytes: %v", err)
	}
	if _, err := DecodeDescriptor(got, k.Public(), p, DefaultPeriodLen, now); err != nil {
		t.Fatal(err)
	}
}

// TestIntroPointProofOfWork: with an effort in the hold, an introduction
// without a solution is refused before the rate limit and the replay
// cache; with one it is forwarded; a hold whose effort differs from the
// signed one is refused.
func TestIntroPointProofOfWork(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{})
	const effort = 10
	held, id, auth := holdIntro(t, s, [cell.CookieLen]byte{3}, effort)
	type forwarded struct {
		msg   []byte
		nonce [powNonceLen]byte
		err   error
	}
	// readFwd reads one forwarded introduction off c (the hold's stream is
	// a synchronous pipe: the intro point's write waits for this read).
	readFwd := func(c net.Conn, withNonce bool) chan forwarded {
		ch := make(chan forwarded, 1)
		go func() {
			var f forwarded
			f.msg, f.err = readFrame16(c, maxIntroLen)
			if f.err == nil && withNonce {
				_, f.err = io.ReadFull(c, f.nonce[:])
			}
			ch <- f
		}()
		return ch
	}
	fwdCh := readFwd(held, true)
	msg := make([]byte, 64)
	rand.Read(msg)
	var bad [powNonceLen]byte
	for powOK(id, msg, bad, effort) {
		bad[0]++
	}
	if st := introducePoW(t, s, id, msg, bad); st != statusNeedPoW {
		t.Fatalf("introduction without proof of work: status %d", st)
	}
	nonce, err := solvePoW(t.Context(), id, msg, effort)
	if err != nil {
		t.Fatal(err)
	}
	if st := introducePoW(t, s, id, msg, nonce); st != statusOK {
		t.Fatalf("introduction with proof of work: status %d", st)
	}
	// The hold forwards the nonce after the message, for the service to
	// check the work again; a hold of the first version does not.
	if f := <-fwdCh; f.err != nil || string(f.msg) != string(msg) || f.nonce != nonce {
		t.Fatalf("forwarded introduction: %v, nonce %x want %x", f.err, f.nonce, nonce)
	}
	go io.Copy(io.Discard, held)
	v1, v1id := holdIntroAt(t, s, TargetIntroHoldV1, [cell.CookieLen]byte{5}, effort)
	msg = make([]byte, 64)
	rand.Read(msg)
	if nonce, err = solvePoW(t.Context(), v1id, msg, effort); err != nil {
		t.Fatal(err)
	}
	v1Ch := readFwd(v1, false)
	if st := introducePoW(t, s, v1id, msg, nonce); st != statusOK {
		t.Fatalf("introduction through a v1 hold: status %d", st)
	}
	if f := <-v1Ch; f.err != nil || string(f.msg) != string(msg) {
		t.Fatalf("v1 hold forwarded: %v", f.err)
	}
	v1.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var extra [1]byte
	if n, _ := v1.Read(extra[:]); n != 0 {
		t.Fatal("a v1 hold got bytes after the introduction")
	}
	c := serve(t, s, TargetIntroHold, [cell.CookieLen]byte{4})
	hm := append(append(id[:0:0], id[:]...), auth.Public().(ed25519.PublicKey)...)
	hm = append(hm, 0) // claims effort 0, signed 10
	hm = append(hm, ed25519.Sign(auth, introHoldMessage([cell.CookieLen]byte{4}, id, effort))...)
	c.Write(hm)
	if st := status(t, c); st != statusRefused {
		t.Fatalf("hold with a changed effort: status %d", st)
	}
}

// TestHSDirCapsDescriptorLifetime: a descriptor that claims to expire in
// the far future is kept no longer than the end of the period after its
// own, so stale descriptors are not served for ever and a full store
// frees up: otherwise anyone with one circuit could fill MaxDescriptors
// with keys of their own and lock out every service for good.
func TestHSDirCapsDescriptorLifetime(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	s := NewServer(ServerConfig{MaxDescriptors: 2, Now: func() time.Time { return clock() }})
	put := func(k Key, at time.Time, expires time.Time) (byte, [32]byte) {
		p := PeriodOf(at, DefaultPeriodLen)
		d := &Descriptor{Period: p, PeriodLen: DefaultPeriodLen, Revision: 1, Expires: expires,
			Intros: []IntroPoint{{Peer: []byte("x")}}}
		raw, err := encodeDescriptor(d, k.Public(), signerOf(k).blind(p, DefaultPeriodLen))
		if err != nil {
			t.Fatal(err)
		}
		c := serve(t, s, TargetDescPut, [cell.CookieLen]byte{})
		go c.Write(appendFrame16(nil, raw))
		b, _ := BlindPublic(k.Public(), p, DefaultPeriodLen)
		return status(t, c), Index(b, p, DefaultPeriodLen)
	}
	forever := time.Unix(1<<40, 0)
	var stale [32]byte
	for range 2 {
		st, idx := put(testKey(t), now, forever)
		if st != statusOK {
			t.Fatalf("put: status %d", st)
		}
		stale = idx
	}
	later := now.Add(3 * DefaultPeriodLen * time.Second)
	clock = func() time.Time { return later }
	c := serve(t, s, TargetDescGet, [cell.CookieLen]byte{})
	go c.Write(stale[:])
	if st := status(t, c); st != statusNotFound {
		t.Fatalf("descriptor three periods old served: status %d", st)
	}
	if st, _ := put(testKey(t), later, later.Add(time.Hour)); st != statusOK {
		t.Fatalf("fresh descriptor into a store full of stale ones: status %d", st)
	}
}

// TestRendezvousWaitingPerCircuit: one circuit keeps at most
// maxWaitingPerCircuit client cookies waiting; another circuit is not
// affected, and a cookie that ends (closed or joined) frees its place.
func TestRendezvousWaitingPerCircuit(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{})
	circ := [cell.CookieLen]byte{1}
	register := func(cc [cell.CookieLen]byte) (net.Conn, [cookieLen]byte, byte) {
		var cookie [cookieLen]byte
		rand.Read(cookie[:])
		c := serve(t, s, TargetRendezvous, cc)
		c.Write(append([]byte{rvClient}, cookie[:]...))
		return c, cookie, status(t, c)
	}
	var first net.Conn
	var firstCookie [cookieLen]byte
	for i := range maxWaitingPerCircuit {
		c, ck, st := register(circ)
		if st != statusOK {
			t.Fatalf("cookie %d: status %d", i, st)
		}
		if i == 0 {
			first, firstCookie = c, ck
		}
	}
	if _, _, st := register(circ); st != statusRateLimited {
		t.Fatalf("cookie beyond the circuit's cap: status %d", st)
	}
	if _, _, st := register([cell.CookieLen]byte{2}); st != statusOK {
		t.Fatalf("another circuit: status %d", st)
	}
	// The service joins the first cookie: its place is free again.
	sv := serve(t, s, TargetRendezvous, [cell.CookieLen]byte{3})
	go sv.Write(append([]byte{rvService}, firstCookie[:]...))
	if st := status(t, sv); st != statusOK {
		t.Fatalf("join: status %d", st)
	}
	_ = first
	c, _, st := register(circ)
	if st != statusOK {
		t.Fatalf("after a join: status %d", st)
	}
	c.Close()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.waitingPer[circ] == maxWaitingPerCircuit-1
	})
	if _, _, st := register(circ); st != statusOK {
		t.Fatalf("after a close: status %d", st)
	}
}

// waitFor polls cond under a deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met in time")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestHSDirNewIndexesPerCircuit: one circuit stores at most
// maxDescsPerCircuit new indexes; a newer revision of an index already
// stored and other circuits are not affected.
func TestHSDirNewIndexesPerCircuit(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	s := NewServer(ServerConfig{Now: func() time.Time { return now }})
	put := func(k Key, rev uint64, circ byte) byte {
		p := PeriodOf(now, DefaultPeriodLen)
		d := &Descriptor{Period: p, PeriodLen: DefaultPeriodLen, Revision: rev, Expires: now.Add(time.Hour),
			Intros: []IntroPoint{{Peer: []byte("x")}}}
		raw, err := encodeDescriptor(d, k.Public(), signerOf(k).blind(p, DefaultPeriodLen))
		if err != nil {
			t.Fatal(err)
		}
		c := serve(t, s, TargetDescPut, [cell.CookieLen]byte{circ})
		go c.Write(appendFrame16(nil, raw))
		return status(t, c)
	}
	first := testKey(t)
	for i := range maxDescsPerCircuit {
		k := first
		if i > 0 {
			k = testKey(t)
		}
		if st := put(k, 1, 1); st != statusOK {
			t.Fatalf("descriptor %d: status %d", i, st)
		}
	}
	if st := put(testKey(t), 1, 1); st != statusRateLimited {
		t.Fatalf("new index beyond the circuit's cap: status %d", st)
	}
	if st := put(first, 2, 1); st != statusOK {
		t.Fatalf("newer revision of a stored index: status %d", st)
	}
	if st := put(testKey(t), 1, 2); st != statusOK {
		t.Fatalf("another circuit: status %d", st)
	}
}

// TestIntroHoldsPerCircuit: one circuit holds at most maxHoldsPerCircuit
// intro points at once; another circuit is not affected, and a hold that
// ends frees its place.
func TestIntroHoldsPerCircuit(t *testing.T) {
	t.Parallel()
	s := NewServer(ServerConfig{})
	circ := [cell.CookieLen]byte{9}
	var held []net.Conn
	for range maxHoldsPerCircuit {
		c, _, _ := holdIntro(t, s, circ, 0)
		held = append(held, c)
	}
	try := func(cc [cell.CookieLen]byte) byte {
		auth, id := newAuthKey()
		c := serve(t, s, TargetIntroHold, cc)
		msg := append(append(id[:0:0], id[:]...), auth.Public().(ed25519.PublicKey)...)
		msg = append(msg, 0)
		msg = append(msg, ed25519.Sign(auth, introHoldMessage(cc, id, 0))...)
		go c.Write(msg)
		return status(t, c)
	}
	if st := try(circ); st != statusRateLimited {
		t.Fatalf("hold beyond the circuit's cap: status %d", st)
	}
	holdIntro(t, s, [cell.CookieLen]byte{10}, 0)
	held[0].Close()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.holdsPer[circ] < maxHoldsPerCircuit
	})
	holdIntro(t, s, circ, 0)
}
