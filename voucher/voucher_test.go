package voucher

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

// mintOne runs the whole blind-signing round trip for one voucher.
func mintOne(t testing.TB, sk *SigningKeyset, amount uint64) Voucher {
	t.Helper()
	var seed Seed
	rand.Read(seed[:])
	key, ok := sk.Public().Key(amount)
	if !ok {
		t.Fatalf("no key for %d", amount)
	}
	b, err := Blind(seed, amount, key)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := sk.BlindSign(amount, b.Msg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Finalize(sk.Public().ID(), bs)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBlindIsDeterministicPerSeed(t *testing.T) {
	t.Parallel()
	sk := testKeyset(t, testT0)
	key, _ := sk.Public().Key(4)
	seed := Seed{1, 2, 3}
	a, err := Blind(seed, 4, key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Blind(seed, 4, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Msg, b.Msg) {
		t.Fatal("same seed, different blinded messages")
	}
	c, _ := Blind(Seed{9}, 4, key)
	if bytes.Equal(a.Msg, c.Msg) {
		t.Fatal("different seeds, same blinded message")
	}
	// The state of a rebuilt blinding unblinds the first one's signature.
	bs, err := sk.BlindSign(4, a.Msg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := b.Finalize(sk.Public().ID(), bs)
	if err != nil {
		t.Fatal(err)
	}
	if err := sk.Public().Verify(&v, testT0); err != nil {
		t.Fatal(err)
	}
	if v.Secret != seed.Secret() {
		t.Fatal("secret not derived from seed")
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	sk := testKeyset(t, testT0)
	pub := sk.Public()
	good := mintOne(t, sk, 8)
	other := testKeysetWindow(t, testT0.Add(hour)) // same RSA keys, other window and id

	forged := good
	forged.Sig = append([]byte(nil), good.Sig...)
	forged.Sig[5] ^= 0x40
	wrongDenom := good
	wrongDenom.Amount = 4 // signed by the 8-sat key
	noKey := good
	noKey.Amount = 1024
	otherSecret := good
	otherSecret.Secret[0] ^= 1
	wrongSet := good
	wrongSet.Keyset = other.Public().ID()

	tests := []struct {
		name string
		ks   *Keyset
		v    Voucher
		now  int // minutes after testT0
		want error
	}{
		{name: "good", ks: pub, v: good, now: 1},
		{name: "good in grace", ks: pub, v: good, now: 90},
		{name: "expired", ks: pub, v: good, now: 120, want: ErrExpired},
		{name: "not yet valid", ks: pub, v: good, now: -1, want: ErrNotYetValid},
		{name: "forged signature", ks: pub, v: forged, now: 1, want: ErrBadSignature},
		{name: "wrong denomination", ks: pub, v: wrongDenom, now: 1, want: ErrBadSignature},
		{name: "denomination without key", ks: pub, v: noKey, now: 1, want: ErrDenomination},
		{name: "other secret", ks: pub, v: otherSecret, now: 1, want: ErrBadSignature},
		{name: "voucher names other keyset", ks: pub, v: wrongSet, now: 1, want: ErrUnknownKeyset},
		{name: "checked against other keyset", ks: other.Public(), v: good, now: 61, want: ErrUnknownKeyset},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.ks.Verify(&tc.v, testT0.Add(timeMinutes(tc.now)))
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestKeysetRoundTripAndSplit(t *testing.T) {
	t.Parallel()
	sk := testKeyset(t, testT0)
	enc, _ := sk.Public().MarshalBinary()
	ks, err := ParseKeyset(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !ks.Equal(sk.Public()) || ks.ID() != sk.Public().ID() {
		t.Fatal("keyset round trip changed it")
	}
	priv, _ := sk.MarshalBinary()
	sk2, err := ParseSigningKeyset(priv)
	if err != nil {
		t.Fatal(err)
	}
	if !sk2.Public().Equal(sk.Public()) {
		t.Fatal("signing keyset round trip changed the public keyset")
	}
	v := mintOne(t, sk2, 16)
	if err := ks.Verify(&v, testT0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		amount uint64
		max    int
		want   []uint64
		err    error
	}{
		{amount: 31, max: 64, want: []uint64{16, 8, 4, 2, 1}},
		{amount: 48, max: 64, want: []uint64{16, 16, 16}},
		{amount: 48, max: 2, err: ErrAmount},
		{amount: 0, max: 64, err: ErrAmount},
	} {
		got, err := ks.Split(tc.amount, tc.max)
		if !errors.Is(err, tc.err) || (tc.err == nil && !equalU64(got, tc.want)) {
			t.Fatalf("Split(%d,%d) = %v, %v; want %v, %v", tc.amount, tc.max, got, err, tc.want, tc.err)
		}
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
