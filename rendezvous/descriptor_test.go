package rendezvous

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"
)

func testKey(t testing.TB) Key {
	t.Helper()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func testDescriptor(t testing.TB, k Key, now time.Time) ([]byte, uint64) {
	t.Helper()
	p := PeriodOf(now, DefaultPeriodLen)
	d := &Descriptor{Period: p, PeriodLen: DefaultPeriodLen, Revision: 7, Expires: now.Add(time.Hour),
		Intros: []IntroPoint{{ID: [16]byte{1}, Peer: []byte("peer-one"), OnionKey: [32]byte{2}, Addrs: [][]byte{{4, 127, 0, 0, 1}}}}}
	d.EncKey[0] = 9
	raw, err := encodeDescriptor(d, k.Public(), signerOf(k).blind(p, DefaultPeriodLen))
	if err != nil {
		t.Fatal(err)
	}
	return raw, p
}

func TestBlindedSignatureVerifies(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	for _, p := range []uint64{0, 1, 20000} {
		b := signerOf(k).blind(p, DefaultPeriodLen)
		want, err := BlindPublic(k.Public(), p, DefaultPeriodLen)
		if err != nil {
			t.Fatal(err)
		}
		if !want.Equal(b.Public()) {
			t.Fatalf("period %d: blinded public key from the secret differs from the one from the public key", p)
		}
		if !ed25519.Verify(want, []byte("m"), b.Sign([]byte("m"))) {
			t.Fatalf("period %d: blinded signature does not verify", p)
		}
	}
	a, _ := BlindPublic(k.Public(), 1, DefaultPeriodLen)
	b, _ := BlindPublic(k.Public(), 2, DefaultPeriodLen)
	if a.Equal(b) || a.Equal(k.Public()) {
		t.Fatal("blinded keys of two periods (or of a period and the identity) are equal")
	}
}

func TestDescriptorRoundTripAndRefusals(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	now := time.Unix(1_800_000_000, 0)
	raw, p := testDescriptor(t, k, now)
	d, err := DecodeDescriptor(raw, k.Public(), p, DefaultPeriodLen, now)
	if err != nil {
		t.Fatal(err)
	}
	if d.Revision != 7 || d.EncKey[0] != 9 || len(d.Intros) != 1 || !bytes.Equal(d.Intros[0].Peer, []byte("peer-one")) {
		t.Fatalf("decoded %+v", d)
	}
	o, err := ParseOuter(raw)
	if err != nil || o.CheckPeriod(now, DefaultPeriodLen) != nil {
		t.Fatalf("outer: %v", err)
	}
	other := testKey(t)
	cases := []struct {
		name string
		raw  []byte
		id   ed25519.PublicKey
		p    uint64
		now  time.Time
		want error
	}{
		{"other service", raw, other.Public(), p, now, ErrBadDescriptor},
		{"wrong period", raw, k.Public(), p + 1, now, ErrWrongPeriod},
		{"expired", raw, k.Public(), p, now.Add(2 * time.Hour), ErrWrongPeriod},
		{"flipped signature", flip(raw, len(raw)-1), k.Public(), p, now, ErrBadDescriptor},
		{"flipped body", flip(raw, 60), k.Public(), p, now, ErrBadDescriptor},
		{"truncated", raw[:len(raw)-1], k.Public(), p, now, ErrBadDescriptor},
	}
	for _, c := range cases {
		if _, err := DecodeDescriptor(c.raw, c.id, c.p, DefaultPeriodLen, c.now); !errors.Is(err, c.want) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.want)
		}
	}
	// An HSDir refuses a descriptor two periods away.
	if err := o.CheckPeriod(now.Add(3*24*time.Hour), DefaultPeriodLen); !errors.Is(err, ErrWrongPeriod) {
		t.Errorf("HSDir period check: %v", err)
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 1
	return c
}

func FuzzDescriptor(f *testing.F) {
	k := testKey(f)
	now := time.Unix(1_800_000_000, 0)
	raw, p := testDescriptor(f, k, now)
	f.Add(raw)
	f.Add(raw[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		if o, err := ParseOuter(b); err == nil {
			_ = o.CheckPeriod(now, DefaultPeriodLen)
		}
		if d, err := DecodeDescriptor(b, k.Public(), p, DefaultPeriodLen, now); err == nil {
			// Re-encode the decoded content and decode it again.
			raw2, err := encodeDescriptor(d, k.Public(), signerOf(k).blind(p, DefaultPeriodLen))
			if err != nil {
				t.Fatal(err)
			}
			d2, err := DecodeDescriptor(raw2, k.Public(), p, DefaultPeriodLen, now)
			if err != nil || d2.Revision != d.Revision || len(d2.Intros) != len(d.Intros) || d2.EncKey != d.EncKey {
				t.Fatalf("re-encoded descriptor differs: %v", err)
			}
		}
		var ip introPayload
		if ip.unmarshal(b) == nil {
			out, err := ip.marshal()
			if err != nil || !bytes.Equal(out, b) {
				t.Fatalf("introduction payload does not re-encode: %v", err)
			}
		}
	})
}

func TestIntroductionRoundTrip(t *testing.T) {
	t.Parallel()
	k := testKey(t)
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	var enc [32]byte
	copy(enc[:], static.Public)
	p := &introPayload{Cookie: [20]byte{5}, Port: 80, RVPeer: []byte("rv"), RVAddrs: [][]byte{{1}}}
	msg, chs, err := newIntroduction(enc, k.Public(), [16]byte{3}, p)
	if err != nil {
		t.Fatal(err)
	}
	got, shs, err := openIntroduction(static, k.Public(), [16]byte{3}, msg)
	if err != nil || got.Port != 80 || got.Cookie != p.Cookie {
		t.Fatalf("open: %+v %v", got, err)
	}
	if _, _, err := openIntroduction(static, k.Public(), [16]byte{4}, msg); !errors.Is(err, ErrBadIntroduce) {
		t.Fatalf("introduction for another intro id: %v", err)
	}
	msg2, s1, s2, err := shs.WriteMessage(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, c1, c2, err := chs.ReadMessage(nil, msg2)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := c1.Encrypt(nil, nil, []byte("hi"))
	if pt, err := s1.Decrypt(nil, nil, ct); err != nil || string(pt) != "hi" {
		t.Fatal("client to service")
	}
	ct, _ = s2.Encrypt(nil, nil, []byte("yo"))
	if pt, err := c2.Decrypt(nil, nil, ct); err != nil || string(pt) != "yo" {
		t.Fatal("service to client")
	}
}

func FuzzIntroduce(f *testing.F) {
	k := testKey(f)
	static, _ := hsSuite.GenerateKeypair(rand.Reader)
	var enc [32]byte
	copy(enc[:], static.Public)
	msg, _, _ := newIntroduction(enc, k.Public(), [16]byte{}, &introPayload{Port: 1, RVPeer: []byte("x")})
	f.Add(msg)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = openIntroduction(static, k.Public(), [16]byte{}, b)
	})
}

func TestReplayCacheBounded(t *testing.T) {
	t.Parallel()
	r := newReplayCache(4, time.Hour)
	now := time.Unix(0, 0)
	if r.seen([32]byte{1}, now) || !r.seen([32]byte{1}, now) {
		t.Fatal("first sighting must pass, second must be a replay")
	}
	for i := byte(2); i < 20; i++ {
		r.seen([32]byte{i}, now)
	}
	if len(r.keys) > 4 {
		t.Fatalf("cache holds %d keys, bound 4", len(r.keys))
	}
}
