package onionaddr

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// tor is Tor's own vector (src/test/test_hs_common.c, test_build_address and
// test_validate_address): the RFC 8032 test 1 public key and its address.
var tor = struct{ pub, addr string }{
	"d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
	"25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid.onion",
}

func TestTorVector(t *testing.T) {
	t.Parallel()
	pub, _ := hex.DecodeString(tor.pub)
	if got := Encode(pub); got != tor.addr {
		t.Fatalf("Encode = %s, want %s", got, tor.addr)
	}
	back, err := Parse(tor.addr)
	if err != nil || hex.EncodeToString(back) != tor.pub {
		t.Fatalf("Parse = %x, %v", back, err)
	}
}

// TestOwnVectors: addresses of fixed-seed keys (seed = n followed by 31
// zero bytes), computed independently from the public keys crypto/ed25519
// derives, with Python's hashlib.sha3_256 and base64.b32encode.
func TestOwnVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		seed byte
		want string
	}{
		{0, "hnvcppgow2sc2yvdvdicu3ynonsteflxdxrehjr2ybekdc2z3iu63yid.onion"},
		{1, "z3gbkb64dxoxffmvdquqrchqsww3sbcndnz5nfxg34df22b32t6feiad.onion"},
	} {
		s := make([]byte, ed25519.SeedSize)
		s[0] = tc.seed
		pub := ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
		if got := Encode(pub); got != tc.want {
			t.Errorf("seed %d: Encode = %s, want %s", tc.seed, got, tc.want)
		}
	}
}

func TestParse(t *testing.T) {
	t.Parallel()
	good := tor.addr
	id := good[:IDLen]
	cases := []struct {
		host string
		want error
	}{
		{good, nil},
		{"duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion", nil},
		{"www." + good, nil},
		{"a.b." + good, nil},
		{strings.ToUpper(good), nil},
		{"35" + id[2:] + ".onion", ErrChecksum},
		{id[:55] + "e.onion", ErrVersion},
		{"expyuzz4wqqyqhjn.onion", ErrLength},
		{"abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion", ErrVersion},
		{id[:55] + "1.onion", ErrBase32},
		{"", ErrNotOnion},
		{".onion", ErrNotOnion},
		{"onion", ErrNotOnion},
		{"x.onion", ErrLength},
		{"." + good[:0] + ".onion", ErrLength},
		{id + ".example", ErrNotOnion},
		{id, ErrNotOnion},
	}
	for _, tc := range cases {
		_, err := Parse(tc.host)
		if !errors.Is(err, tc.want) {
			t.Errorf("Parse(%q) = %v, want %v", tc.host, err, tc.want)
		}
	}
}

func TestIsOnion(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"x.onion": true, "X.ONION": true, ".onion": true, "onion": false, "x.onion.": false, "": false,
	} {
		if got := IsOnion(host); got != want {
			t.Errorf("IsOnion(%q) = %v", host, got)
		}
	}
}

// FuzzParse: whatever parses re-encodes to the same id (in lower case).
func FuzzParse(f *testing.F) {
	f.Add(tor.addr)
	f.Add("www." + tor.addr)
	f.Add("expyuzz4wqqyqhjn.onion")
	f.Add(strings.ToUpper(tor.addr))
	f.Fuzz(func(t *testing.T, host string) {
		pub, err := Parse(host)
		if err != nil {
			return
		}
		enc := Encode(pub)
		if !strings.HasSuffix(strings.ToLower(host), enc) {
			t.Fatalf("Parse(%q) re-encodes to %s", host, enc)
		}
		again, err := Parse(enc)
		if err != nil || !again.Equal(pub) {
			t.Fatalf("round trip of %s: %x, %v", enc, again, err)
		}
	})
}
