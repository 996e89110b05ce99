package rendezvous

import (
	"crypto/ed25519"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"filippo.io/edwards25519"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// KeyPrefix starts the controller form of a service key, as Tor's control
// port reads and writes it (control-spec ADD_ONION, "ED25519-V3").
const KeyPrefix = "ED25519-V3:"

// expandedSize is the length of Tor's expanded ed25519 secret key: the
// clamped scalar a (32 bytes, little-endian) followed by the 32-byte
// prefix RH used to derive signing nonces (RFC 8032 §5.1.5; tor's
// ed25519_secret_key_t).
const expandedSize = 64

// Errors returned by ParseKey; match with errors.Is.
var (
	ErrKeyPrefix  = errors.New("rendezvous: service key does not start with " + KeyPrefix)
	ErrKeyBase64  = errors.New("rendezvous: service key is not base64")
	ErrKeyLength  = errors.New("rendezvous: service key is not 64 bytes")
	ErrKeyClamped = errors.New("rendezvous: service key scalar is not clamped")
)

// Key is an onion service's secret identity key: an ed25519 key in Tor's
// expanded form (scalar a | prefix RH), the form a controller saves and
// hands back in ADD_ONION, so a service keeps its address across restarts.
// A key made by GenerateKey also keeps the 32-byte seed it was expanded
// from; a parsed key has none (Tor never reveals it).
//
// Key is a value; copies share nothing. The zero Key is not a key: use
// GenerateKey or ParseKey. fmt and log/slog print Key as "[secret]"; only
// String gives the secret form.
type Key struct {
	// a is the clamped scalar, little-endian, as in the expanded key.
	a [32]byte
	// prefix is RH, the second half of SHA-512(seed).
	prefix [32]byte
	// pub is a·B, cached.
	pub [32]byte
	// seed is set only for generated keys.
	seed    [32]byte
	hasSeed bool
}

// GenerateKey makes a new service key from 32 bytes of rand (crypto/rand
// in production).
func GenerateKey(rand io.Reader) (Key, error) {
	var k Key
	if _, err := io.ReadFull(rand, k.seed[:]); err != nil {
		return Key{}, fmt.Errorf("rendezvous: generate key: %w", err)
	}
	k.hasSeed = true
	// RFC 8032 §5.1.5: h = SHA-512(seed); a = clamp(h[:32]); RH = h[32:].
	h := sha512.Sum512(k.seed[:])
	copy(k.a[:], h[:32])
	clamp(&k.a)
	copy(k.prefix[:], h[32:])
	k.derivePublic()
	return k, nil
}

// ParseKey reads the controller form "ED25519-V3:<base64 of a | RH>".
// The base64 is standard, padded ("==", as Tor writes it) or not, with
// no whitespace or non-zero trailing bits; the key must be exactly 64 bytes
// and its scalar clamped, as every ed25519 expansion is.
func ParseKey(s string) (Key, error) {
	b64, ok := strings.CutPrefix(s, KeyPrefix)
	if !ok {
		return Key{}, ErrKeyPrefix
	}
	enc := base64.StdEncoding.Strict()
	if !strings.HasSuffix(b64, "=") {
		enc = base64.RawStdEncoding.Strict()
	}
	if enc.DecodedLen(len(b64)) > 2*expandedSize {
		return Key{}, ErrKeyLength
	}
	raw, err := enc.DecodeString(b64)
	// encoding/base64 skips CR and LF even when strict; a key is one token.
	if err != nil || strings.ContainsAny(b64, "\r\n") {
		return Key{}, ErrKeyBase64
	}
	if len(raw) != expandedSize {
		return Key{}, ErrKeyLength
	}
	var k Key
	copy(k.a[:], raw[:32])
	copy(k.prefix[:], raw[32:])
	clear(raw)
	if k.a[0]&7 != 0 || k.a[31]&0xC0 != 0x40 {
		return Key{}, ErrKeyClamped
	}
	k.derivePublic()
	return k, nil
}

// clamp applies RFC 8032 §5.1.5 step 2 to a.
func clamp(a *[32]byte) {
	a[0] &= 248
	a[31] &= 127
	a[31] |= 64
}

// scalar returns a mod l.
func (k *Key) scalar() *edwards25519.Scalar {
	s, err := edwards25519.NewScalar().SetBytesWithClamping(k.a[:])
	if err != nil { // only for a length other than 32
		panic("rendezvous: scalar of a 32-byte key: " + err.Error())
	}
	return s
}

func (k *Key) derivePublic() {
	A := new(edwards25519.Point).ScalarBaseMult(k.scalar())
	copy(k.pub[:], A.Bytes())
}

// String returns the controller form "ED25519-V3:<base64>" (padded, as
// Tor writes it). It is the secret key: never log it.
func (k Key) String() string {
	var raw [expandedSize]byte
	copy(raw[:32], k.a[:])
	copy(raw[32:], k.prefix[:])
	s := KeyPrefix + base64.StdEncoding.EncodeToString(raw[:])
	clear(raw[:])
	return s
}

// Expanded returns the 64-byte expanded secret key, scalar a then prefix
// RH: the bytes String encodes and Tor's ADD_ONION ED25519-V3 takes. It
// is the secret key: the caller clears it when done.
func (k Key) Expanded() [expandedSize]byte {
	var raw [expandedSize]byte
	copy(raw[:32], k.a[:])
	copy(raw[32:], k.prefix[:])
	return raw
}

// Format keeps the secret out of fmt: every verb prints "[secret]". Call
// String for the controller form.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, "[secret]") }

// LogValue keeps the secret out of log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue("[secret]") }

// Seed returns the 32-byte seed a generated key was expanded from; ok is
// false for a parsed key, whose seed is unknown.
func (k Key) Seed() (seed []byte, ok bool) {
	if !k.hasSeed {
		return nil, false
	}
	return append([]byte(nil), k.seed[:]...), true
}

// Public returns the service's ed25519 public key (a fresh copy).
func (k Key) Public() ed25519.PublicKey {
	return append(ed25519.PublicKey(nil), k.pub[:]...)
}

// ServiceID returns the 56-character id, the address without ".onion"
// (what ADD_ONION reports as ServiceID).
func (k Key) ServiceID() string { return onionaddr.ID(k.pub[:]) }

// Address returns the service's onion host "<56 chars>.onion".
func (k Key) Address() string { return onionaddr.Encode(k.pub[:]) }

// Equal reports whether k and o are the same secret key (in constant time).
func (k Key) Equal(o Key) bool {
	return subtle.ConstantTimeCompare(k.a[:], o.a[:])&subtle.ConstantTimeCompare(k.prefix[:], o.prefix[:]) == 1
}

// Sign signs msg with the expanded key (RFC 8032 §5.1.6 from step 2, as
// tor's ed25519_sign does with an expanded key); the signature verifies
// under Public() with crypto/ed25519.Verify.
func (k Key) Sign(msg []byte) []byte {
	return signExpanded(k.scalar(), k.prefix[:], k.pub[:], msg)
}

// signExpanded is Ed25519 signing given the secret scalar a, nonce prefix,
// encoded public key A and message: r = SHA-512(prefix | M) mod l,
// R = r·B, S = r + SHA-512(R | A | M)·a mod l; the signature is R | S.
func signExpanded(a *edwards25519.Scalar, prefix, pub, msg []byte) []byte {
	h := sha512.New()
	h.Write(prefix)
	h.Write(msg)
	var digest [64]byte
	r, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		panic("rendezvous: nonce of 64 bytes: " + err.Error())
	}
	R := new(edwards25519.Point).ScalarBaseMult(r).Bytes()
	h.Reset()
	h.Write(R)
	h.Write(pub)
	h.Write(msg)
	c, err := edwards25519.NewScalar().SetUniformBytes(h.Sum(digest[:0]))
	if err != nil {
		panic("rendezvous: challenge of 64 bytes: " + err.Error())
	}
	S := edwards25519.NewScalar().MultiplyAdd(c, a, r)
	sig := make([]byte, 0, ed25519.SignatureSize)
	sig = append(sig, R...)
	return append(sig, S.Bytes()...)
}
