package voucher

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"time"
)

// keysetVersion is the first byte of an encoded keyset (VOUCHERS.md §1).
const keysetVersion = 1

// maxUnix bounds encoded times so that conversions never overflow.
const maxUnix = 1 << 40

// KeysetID names a keyset: the first 8 bytes of SHA-256 over a domain tag
// and the keyset's canonical encoding (VOUCHERS.md §1.1). It is a name, not
// a commitment: a client compares the whole published keyset, never just
// the id.
type KeysetID [KeysetIDSize]byte

// String returns the id in hex.
func (id KeysetID) String() string { return hex.EncodeToString(id[:]) }

// DenomKey is one denomination's public key.
type DenomKey struct {
	// Amount is the denomination in sats, a power of two 1..2^MaxDenomExp.
	Amount uint64
	// Key is the RSA public key that signs vouchers of Amount.
	Key *rsa.PublicKey
}

// Keyset is a node's public keyset: one blind-RSA key per denomination and a
// validity window. Keysets are immutable once built; all methods are safe
// for concurrent use.
type Keyset struct {
	id          KeysetID
	notBefore   time.Time
	notAfter    time.Time
	redeemUntil time.Time
	keys        []DenomKey // ascending by Amount
	enc         []byte     // canonical encoding
}

// NewKeyset builds a keyset. Vouchers are minted in [notBefore, notAfter)
// and redeemed in [notBefore, redeemUntil); redeemUntil-notAfter is the
// grace period after rotation. Times are truncated to whole seconds.
func NewKeyset(notBefore, notAfter, redeemUntil time.Time, keys []DenomKey) (*Keyset, error) {
	ks := make([]DenomKey, len(keys))
	copy(ks, keys)
	slices.SortFunc(ks, func(a, b DenomKey) int {
		switch {
		case a.Amount < b.Amount:
			return -1
		case a.Amount > b.Amount:
			return 1
		}
		return 0
	})
	enc, err := encodeKeyset(notBefore, notAfter, redeemUntil, ks)
	if err != nil {
		return nil, err
	}
	return ParseKeyset(enc)
}

func encodeKeyset(notBefore, notAfter, redeemUntil time.Time, keys []DenomKey) ([]byte, error) {
	if len(keys) == 0 || len(keys) > MaxKeysPerKeyset {
		return nil, fmt.Errorf("%w: keyset needs 1..%d keys", ErrMalformed, MaxKeysPerKeyset)
	}
	b := make([]byte, 0, 64+len(keys)*(7+MinModulusBytes))
	b = append(b, keysetVersion)
	for _, t := range []time.Time{notBefore, notAfter, redeemUntil} {
		if t.Unix() < 0 || t.Unix() >= maxUnix {
			return nil, fmt.Errorf("%w: keyset time out of range", ErrMalformed)
		}
		b = appendU64(b, uint64(t.Unix()))
	}
	b = append(b, byte(len(keys)))
	for _, k := range keys {
		e, ok := denomExp(k.Amount)
		if !ok {
			return nil, fmt.Errorf("%w: amount %d", ErrDenomination, k.Amount)
		}
		if k.Key == nil || k.Key.N == nil {
			return nil, fmt.Errorf("%w: nil key", ErrMalformed)
		}
		n := k.Key.N.Bytes()
		b = append(b, e)
		b = appendU32(b, uint32(k.Key.E))
		b = appendU16(b, uint16(len(n)))
		b = append(b, n...)
	}
	return b, nil
}

// ParseKeyset decodes a keyset (VOUCHERS.md §1) and checks every field:
// version, ordered times, strictly ascending exponents, exponent 65537,
// moduli of 2048..4096 bits that are odd and minimally encoded, no trailing
// bytes.
func ParseKeyset(b []byte) (*Keyset, error) {
	if len(b) > MaxKeysetSize {
		return nil, fmt.Errorf("%w: keyset of %d bytes", ErrMalformed, len(b))
	}
	r := reader{b: b}
	if r.u8() != keysetVersion {
		return nil, fmt.Errorf("%w: keyset version", ErrMalformed)
	}
	var ts [3]time.Time
	for i := range ts {
		v := r.u64()
		if v >= maxUnix {
			return nil, fmt.Errorf("%w: keyset time", ErrMalformed)
		}
		ts[i] = time.Unix(int64(v), 0).UTC()
	}
	if !ts[0].Before(ts[1]) || ts[2].Before(ts[1]) {
		return nil, fmt.Errorf("%w: keyset window out of order", ErrMalformed)
	}
	n := int(r.u8())
	if n == 0 || n > MaxKeysPerKeyset {
		return nil, fmt.Errorf("%w: keyset key count %d", ErrMalformed, n)
	}
	ks := &Keyset{notBefore: ts[0], notAfter: ts[1], redeemUntil: ts[2]}
	last := -1
	for range n {
		e := r.u8()
		pubE := r.u32()
		mod := r.take(int(r.u16()))
		if r.bad {
			return nil, fmt.Errorf("%w: keyset truncated", ErrMalformed)
		}
		if int(e) <= last || e > MaxDenomExp {
			return nil, fmt.Errorf("%w: keyset exponents not ascending", ErrMalformed)
		}
		last = int(e)
		if pubE != PublicExponent {
			return nil, fmt.Errorf("%w: public exponent %d", ErrMalformed, pubE)
		}
		if len(mod) < MinModulusBytes || len(mod) > MaxModulusBytes || mod[0] == 0 || mod[len(mod)-1]&1 == 0 {
			return nil, fmt.Errorf("%w: modulus", ErrMalformed)
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(mod), E: PublicExponent}
		ks.keys = append(ks.keys, DenomKey{Amount: 1 << e, Key: pub})
	}
	if !r.finish() {
		return nil, fmt.Errorf("%w: keyset trailing bytes", ErrMalformed)
	}
	ks.enc = append([]byte(nil), b...)
	h := sha256.New()
	h.Write([]byte("co-infuse/keyset/1"))
	h.Write(ks.enc)
	copy(ks.id[:], h.Sum(nil))
	return ks, nil
}

// MarshalBinary returns the canonical encoding (a copy).
func (k *Keyset) MarshalBinary() ([]byte, error) { return append([]byte(nil), k.enc...), nil }

// ID returns the keyset id.
func (k *Keyset) ID() KeysetID { return k.id }

// NotBefore returns the start of the minting and redemption windows.
func (k *Keyset) NotBefore() time.Time { return k.notBefore }

// NotAfter returns the end of the minting window.
func (k *Keyset) NotAfter() time.Time { return k.notAfter }

// RedeemUntil returns the end of the redemption window; spent entries of
// this keyset may be pruned after it.
func (k *Keyset) RedeemUntil() time.Time { return k.redeemUntil }

// MintableAt reports whether vouchers may be minted with this keyset at t.
func (k *Keyset) MintableAt(t time.Time) bool {
	return !t.Before(k.notBefore) && t.Before(k.notAfter)
}

// RedeemableAt reports whether vouchers of this keyset redeem at t.
func (k *Keyset) RedeemableAt(t time.Time) bool {
	return !t.Before(k.notBefore) && t.Before(k.redeemUntil)
}

// Amounts returns the denominations in ascending order.
func (k *Keyset) Amounts() []uint64 {
	out := make([]uint64, len(k.keys))
	for i, dk := range k.keys {
		out[i] = dk.Amount
	}
	return out
}

// Key returns the public key for a denomination.
func (k *Keyset) Key(amount uint64) (*rsa.PublicKey, bool) {
	i := k.index(amount)
	if i < 0 {
		return nil, false
	}
	return k.keys[i].Key, true
}

func (k *Keyset) index(amount uint64) int {
	for i, dk := range k.keys {
		if dk.Amount == amount {
			return i
		}
	}
	return -1
}

// Equal reports whether two keysets are byte-for-byte the same.
func (k *Keyset) Equal(o *Keyset) bool {
	return k != nil && o != nil && bytes.Equal(k.enc, o.enc)
}

// Verify checks a voucher against this keyset at time now: the keyset id,
// the redemption window, the denomination and the signature. It does not
// consult the spent set.
func (k *Keyset) Verify(v *Voucher, now time.Time) error {
	if err := k.CheckCheap(v, now); err != nil {
		return err
	}
	return k.VerifySignature(v)
}

// CheckCheap is the part of Verify that costs no public-key work: the
// keyset id, the redemption window and the denomination (VOUCHERS.md
// §2.5, the cheap checks a hop makes of a whole batch before any
// signature).
func (k *Keyset) CheckCheap(v *Voucher, now time.Time) error {
	if v.Keyset != k.id {
		return ErrUnknownKeyset
	}
	if now.Before(k.notBefore) {
		return ErrNotYetValid
	}
	if !now.Before(k.redeemUntil) {
		return ErrExpired
	}
	if k.index(v.Amount) < 0 {
		return ErrDenomination
	}
	return nil
}

// VerifySignature checks the voucher's signature under the keyset's key for
// its denomination (one RSA verification); ErrDenomination if there is no
// such key.
func (k *Keyset) VerifySignature(v *Voucher) error {
	i := k.index(v.Amount)
	if i < 0 {
		return ErrDenomination
	}
	if err := k.verifyMsg(i, v.Secret[:], v.Sig); err != nil {
		return ErrBadSignature
	}
	return nil
}

// pssOpts are the RSASSA-PSS parameters of the voucher variant
// (RSABSSA-SHA384-PSS-*: SHA-384, MGF1-SHA-384, 48-byte salt).
var pssOpts = rsa.PSSOptions{SaltLength: sha512.Size384, Hash: crypto.SHA384}

// verifyMsg checks sig over msg with key i. An RFC 9474 signature is a
// plain RSASSA-PSS signature (RFC 9474 §4.5), so verification uses the
// standard library's RSASSA-PSS, which is faster than circl's big.Int path;
// the RFC vector test checks both agree.
func (k *Keyset) verifyMsg(i int, msg, sig []byte) error {
	h := sha512.Sum384(msg)
	return rsa.VerifyPSS(k.keys[i].Key, crypto.SHA384, h[:], sig, &pssOpts)
}

// Split breaks amount into denominations of the keyset, largest first, in
// at most max pieces. It fails with ErrAmount if that is impossible.
func (k *Keyset) Split(amount uint64, max int) ([]uint64, error) {
	var out []uint64
	rest := amount
	for i := len(k.keys) - 1; i >= 0 && rest > 0; i-- {
		d := k.keys[i].Amount
		for rest >= d {
			if len(out) == max {
				return nil, fmt.Errorf("%w: %d sats needs more than %d vouchers", ErrAmount, amount, max)
			}
			out = append(out, d)
			rest -= d
		}
	}
	if amount == 0 || rest != 0 {
		return nil, fmt.Errorf("%w: %d sats", ErrAmount, amount)
	}
	return out, nil
}
