package discovery

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/cryptobyte"
)

// reencodeKey returns env with its public key re-encoded non-canonically
// (an unknown protobuf field appended): what a witness can do to an honest
// node's envelope without its key. The body and signature are untouched.
func reencodeKey(t testing.TB, env []byte) []byte {
	t.Helper()
	s := cryptobyte.String(env)
	var ver uint8
	var pkb, body, sig cryptobyte.String
	if !s.ReadUint8(&ver) || !s.ReadUint16LengthPrefixed(&pkb) || !s.ReadUint16LengthPrefixed(&body) || !s.ReadUint16LengthPrefixed(&sig) {
		t.Fatal("bad envelope")
	}
	odd := append(append([]byte{}, pkb...), 0x18, 0x00) // field 3, varint 0
	if _, err := crypto.UnmarshalPublicKey(odd); err != nil {
		t.Fatalf("re-encoded key does not even parse: %v", err)
	}
	var b cryptobyte.Builder
	b.AddUint8(ver)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(odd) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sig) })
	return b.BytesOrPanic()
}

// TestEquivocationProofAndBan: two validly signed bodies with one seq ban
// the node with both kept as the proof; the ban refuses a newer seq and
// survives a restart. The same body signed twice (ECDSA signatures differ
// every time) and a re-encoded envelope ban nobody.
func TestEquivocationProofAndBan(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now().Truncate(time.Second)
	open := func() *Service {
		h, priv := loopbackHost(t, nil)
		s, err := New(h, priv, Config{CacheDir: dir, Logger: testLogger(), Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s := open()

	rpriv, _ := testKey(t, "equivocator")
	rid, _ := peer.IDFromPrivateKey(rpriv)
	ad := sampleAdvert(t, rid)
	ad.Seq, ad.Expiry = 5, now.Add(time.Hour)
	sign := func(a Advert) []byte {
		env, err := SignAdvert(&a, rpriv)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	envA := sign(ad)
	if _, err := s.accept(envA, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.accept(reencodeKey(t, envA), "", nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("re-encoded envelope: err = %v, want ErrMalformed", err)
	}
	if _, err := s.accept(envA, "", nil); err != nil {
		t.Fatalf("same envelope again: %v", err)
	}
	other := ad.Clone()
	other.Prices[RoleExit] = 1
	envB := sign(other)
	if _, err := s.accept(envB, "", nil); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("second body with seq 5: err = %v, want ErrEquivocation", err)
	}
	proof, until := s.EquivocationProof(rid)
	if len(proof) != 2 || until.Before(now.Add(6*24*time.Hour)) {
		t.Fatalf("proof %d envelopes, banned until %v", len(proof), until)
	}
	a0, err0 := openUnchecked(proof[0])
	a1, err1 := openUnchecked(proof[1])
	if err0 != nil || err1 != nil || a0.Seq != a1.Seq || a0.Peer != rid || a1.Peer != rid {
		t.Fatalf("proof is not two valid adverts of one seq: %v %v", err0, err1)
	}
	if same, _ := sameBody(proof[0], proof[1]); same {
		t.Fatal("proof bodies are equal")
	}
	newer := ad.Clone()
	newer.Seq = 6
	if _, err := s.accept(sign(newer), "", nil); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("newer seq from a banned node: err = %v, want ErrEquivocation", err)
	}
	s.flush()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	newer.Seq = 7
	if _, err := s.accept(sign(newer), "", nil); !errors.Is(err, ErrEquivocation) {
		t.Fatalf("after restart: err = %v, want ErrEquivocation", err)
	}
	if proof, _ := s.EquivocationProof(rid); len(proof) != 2 {
		t.Fatal("proof lost in restart")
	}

	// ECDSA signatures are randomised: one body signed twice gives two
	// envelopes that differ. That is not equivocation.
	epriv, _, err := crypto.GenerateECDSAKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	eid, _ := peer.IDFromPrivateKey(epriv)
	ead := sampleAdvert(t, eid)
	ead.Seq, ead.Expiry = 3, now.Add(time.Hour)
	e1, err := SignAdvert(&ead, epriv)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := SignAdvert(&ead, epriv)
	if err != nil {
		t.Fatal(err)
	}
	if string(e1) == string(e2) {
		t.Fatal("test setup: ECDSA envelopes equal")
	}
	if _, err := s.accept(e1, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.accept(e2, "", nil); err != nil {
		t.Fatalf("same body, new signature: %v", err)
	}
	if p, _ := s.EquivocationProof(eid); p != nil {
		t.Fatal("honest ECDSA node banned")
	}
}

// TestWitnessCannotFrame: a cross-check witness on loopback that serves an
// honest node's advert in a re-encoded envelope does not get it banned.
func TestWitnessCannotFrame(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	h0, p0 := loopbackHost(t, nil)
	honest := startService(t, ctx, h0, p0, Config{DHTServer: true, Bootstrap: []peer.AddrInfo{}})
	if err := honest.Publish(ctx, testAdvert(0, 10)); err != nil {
		t.Log(err) // no DHT peers to provide to; the advert is served
	}
	hw, pw := loopbackHost(t, nil)
	startService(t, ctx, hw, pw, Config{DHTServer: true, Bootstrap: []peer.AddrInfo{{ID: h0.ID(), Addrs: h0.Addrs()}}})
	honest.mu.Lock()
	env := honest.own.env
	honest.mu.Unlock()
	forged := framed(reencodeKey(t, env))
	hw.SetStreamHandler(ProtocolAdvert, func(st network.Stream) {
		defer st.Close()
		_, _ = st.Write(forged)
	})

	hc, pc := loopbackHost(t, nil)
	client := startService(t, ctx, hc, pc, Config{Bootstrap: []peer.AddrInfo{{ID: h0.ID(), Addrs: h0.Addrs()}}})
	if _, err := client.fetch(ctx, peer.AddrInfo{ID: h0.ID(), Addrs: h0.Addrs()}); err != nil {
		t.Fatal(err)
	}
	hc.Peerstore().AddAddrs(hw.ID(), hw.Addrs(), time.Hour)
	n, err := client.CrossCheck(ctx, h0.ID(), []peer.ID{hw.ID()})
	if err != nil {
		t.Fatalf("cross-check with a re-encoding witness: %v", err)
	}
	if n != 0 {
		t.Fatalf("%d witnesses counted; the re-encoded copy should be refused", n)
	}
	if p, _ := client.EquivocationProof(h0.ID()); p != nil {
		t.Fatal("honest node banned")
	}
	if _, err := client.Lookup(context.WithoutCancel(ctx), h0.ID()); err != nil {
		t.Fatalf("honest advert gone: %v", err)
	}
}
