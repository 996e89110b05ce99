package rendezvous

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// rfc8032 are the test vectors of RFC 8032 §7.1 (TEST 1, 2, 3, SHA(abc)).
var rfc8032 = []struct{ seed, pub, msg, sig string }{
	{
		"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
		"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
		"",
		"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
	},
	{
		"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
		"3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
		"72",
		"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
	},
	{
		"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
		"fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
		"af82",
		"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
	},
	{
		"833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
		"ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
		"ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
		"dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704",
	},
}

// expandedForm is the controller form of a seed: base64 of a | RH from
// SHA-512(seed), computed here independently of key.go.
func expandedForm(seed []byte) string {
	h := sha512.Sum512(seed)
	h[0] &= 248
	h[31] &= 127
	h[31] |= 64
	return KeyPrefix + base64.StdEncoding.EncodeToString(h[:])
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRFC8032: a key parsed from the expanded form of each RFC seed has the
// RFC public key and makes the RFC signature, byte for byte.
func TestRFC8032(t *testing.T) {
	t.Parallel()
	for i, v := range rfc8032 {
		k, err := ParseKey(expandedForm(unhex(t, v.seed)))
		if err != nil {
			t.Fatalf("vector %d: %v", i, err)
		}
		if got := hex.EncodeToString(k.Public()); got != v.pub {
			t.Errorf("vector %d: public %s, want %s", i, got, v.pub)
		}
		sig := k.Sign(unhex(t, v.msg))
		if got := hex.EncodeToString(sig); got != v.sig {
			t.Errorf("vector %d: signature %s, want %s", i, got, v.sig)
		}
		if !ed25519.Verify(k.Public(), unhex(t, v.msg), sig) {
			t.Errorf("vector %d: crypto/ed25519 rejects the signature", i)
		}
	}
	// TEST 1's address is Tor's own vector (src/test/test_hs_common.c).
	k, _ := ParseKey(expandedForm(unhex(t, rfc8032[0].seed)))
	if got := k.Address(); got != "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion" {
		t.Errorf("TEST 1 address %s", got)
	}
}

// TestTorKey: a key and service id that a real Tor returned to ADD_ONION
// NEW:ED25519-V3 (recorded in the kmp-tor project's controller source).
func TestTorKey(t *testing.T) {
	t.Parallel()
	const (
		key = "ED25519-V3:cKjLrpfAV0rNDmfn6hMpcWUFsN82MqhVxwre9c3KjnlfkZxkJlyixy756WMKtNlVyMrhSxgaZfECky7rE1O1dA=="
		id  = "bxtow33uhscfu2xscwmha4quznly7ybfocm6i5uh35uyltddbj4yesyd"
	)
	k, err := ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if k.ServiceID() != id || k.Address() != id+".onion" {
		t.Errorf("service id %s, want %s", k.ServiceID(), id)
	}
	if k.String() != key {
		t.Errorf("String = %s, want the key as given", k.String())
	}
	msg := []byte("co-infuse")
	if !ed25519.Verify(k.Public(), msg, k.Sign(msg)) {
		t.Error("signature does not verify")
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	seed, ok := k.Seed()
	if !ok || len(seed) != ed25519.SeedSize {
		t.Fatalf("Seed = %x, %v", seed, ok)
	}
	std := ed25519.NewKeyFromSeed(seed)
	if !bytes.Equal(k.Public(), std.Public().(ed25519.PublicKey)) {
		t.Error("public key differs from crypto/ed25519's for the same seed")
	}
	if k.String() != expandedForm(seed) {
		t.Error("String is not the expanded form of the seed")
	}
	for _, msg := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{7}, 1000)} {
		sig := k.Sign(msg)
		if !bytes.Equal(sig, ed25519.Sign(std, msg)) {
			t.Errorf("signature of %d bytes differs from crypto/ed25519's", len(msg))
		}
		if !ed25519.Verify(k.Public(), msg, sig) {
			t.Errorf("signature of %d bytes does not verify", len(msg))
		}
	}
	back, err := ParseKey(k.String())
	if err != nil || !back.Equal(k) || back.Address() != k.Address() {
		t.Fatalf("round trip: %v", err)
	}
	if _, ok := back.Seed(); ok {
		t.Error("a parsed key claims a seed")
	}
	if _, err := GenerateKey(bytes.NewReader(make([]byte, 31))); err == nil {
		t.Error("GenerateKey with 31 random bytes succeeded")
	}
	other, _ := GenerateKey(rand.Reader)
	if other.Equal(k) || other.Address() == k.Address() {
		t.Error("two generated keys are equal")
	}
}

// TestKeyNotPrinted: fmt and slog never show the secret.
func TestKeyNotPrinted(t *testing.T) {
	t.Parallel()
	k, _ := GenerateKey(rand.Reader)
	secret := strings.TrimPrefix(k.String(), KeyPrefix)
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("x", "key", k)
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%v %+v %#v %s %q %x", k, k, k, k, k, k), buf.String()} {
		if strings.Contains(s, secret) || strings.Contains(s, secret[:10]) {
			t.Errorf("secret printed: %s", s)
		}
	}
}

func TestParseKeyErrors(t *testing.T) {
	t.Parallel()
	good := expandedForm(unhex(t, rfc8032[0].seed))
	b64 := strings.TrimPrefix(good, KeyPrefix)
	raw, _ := base64.StdEncoding.DecodeString(b64)
	enc := func(b []byte) string { return KeyPrefix + base64.StdEncoding.EncodeToString(b) }
	unclamped := func(f func(b []byte)) string {
		b := append([]byte(nil), raw...)
		f(b)
		return enc(b)
	}
	cases := []struct {
		name, in string
		want     error
	}{
		{"padded", good, nil},
		{"unpadded", strings.TrimRight(good, "="), nil},
		{"no prefix", b64, ErrKeyPrefix},
		{"lower prefix", "ed25519-v3:" + b64, ErrKeyPrefix},
		{"rsa", "RSA1024:" + b64, ErrKeyPrefix},
		{"new", "NEW:ED25519-V3", ErrKeyPrefix},
		{"empty", KeyPrefix, ErrKeyLength},
		{"short", enc(raw[:63]), ErrKeyLength},
		{"long", enc(append(append([]byte(nil), raw...), 0)), ErrKeyLength},
		{"seed only", enc(raw[:32]), ErrKeyLength},
		{"huge", KeyPrefix + strings.Repeat("A", 1<<16), ErrKeyLength},
		{"space", KeyPrefix + " " + b64, ErrKeyBase64},
		{"newline", KeyPrefix + b64[:40] + "\n" + b64[40:], ErrKeyBase64},
		{"crlf after", good + "\r\n", ErrKeyBase64},
		{"url alphabet", KeyPrefix + "-" + b64[1:], ErrKeyBase64},
		{"one pad", strings.TrimSuffix(good, "="), ErrKeyBase64},
		{"low bits set", unclamped(func(b []byte) { b[0] |= 1 }), ErrKeyClamped},
		{"top bit set", unclamped(func(b []byte) { b[31] |= 0x80 }), ErrKeyClamped},
		{"bit 254 clear", unclamped(func(b []byte) { b[31] &^= 0x40 }), ErrKeyClamped},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseKey(tc.in)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseKey = %v, want %v", err, tc.want)
			}
		})
	}
}

// FuzzParseKey: whatever parses prints back to the padded form of the same
// bytes and signs verifiably.
func FuzzParseKey(f *testing.F) {
	for _, v := range rfc8032 {
		s := expandedForm(unhex(f, v.seed))
		f.Add(s)
		f.Add(strings.TrimRight(s, "="))
	}
	f.Add("ED25519-V3:")
	f.Add("NEW:ED25519-V3")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		out := k.String()
		if strings.TrimRight(out, "=") != strings.TrimRight(s, "=") {
			t.Fatalf("ParseKey(%q).String() = %q", s, out)
		}
		again, err := ParseKey(out)
		if err != nil || !again.Equal(k) {
			t.Fatalf("round trip: %v", err)
		}
		if !ed25519.Verify(k.Public(), []byte(s), k.Sign([]byte(s))) {
			t.Fatal("signature does not verify")
		}
	})
}
