package voucher

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// signingVersion is the first byte of an encoded signing keyset.
const signingVersion = 1

// SigningKeyset is a keyset with its private keys: the node's side. Its
// encoding holds private keys and belongs only in the node's own store
// (0600). Safe for concurrent use.
type SigningKeyset struct {
	pub     *Keyset
	priv    []*rsa.PrivateKey // parallel to pub.keys
	signers []blindrsa.Signer
}

// GenerateKeyset makes a fresh keyset of bits-bit RSA keys, one per amount
// (powers of two). keygen may be nil for rsa.GenerateKey with crypto/rand;
// tests pass a func that hands out pre-generated keys.
func GenerateKeyset(amounts []uint64, bits int, notBefore, notAfter, redeemUntil time.Time,
	keygen func(bits int) (*rsa.PrivateKey, error)) (*SigningKeyset, error) {
	if keygen == nil {
		keygen = func(bits int) (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, bits) }
	}
	if bits < MinModulusBytes*8 || bits > MaxModulusBytes*8 {
		return nil, fmt.Errorf("generate keyset: %d-bit keys out of range", bits)
	}
	privs := make([]*rsa.PrivateKey, len(amounts))
	for i := range amounts {
		k, err := keygen(bits)
		if err != nil {
			return nil, fmt.Errorf("generate keyset: %w", err)
		}
		privs[i] = k
	}
	return NewSigningKeyset(amounts, privs, notBefore, notAfter, redeemUntil)
}

// NewSigningKeyset assembles a signing keyset from private keys, privs[i]
// signing amounts[i].
func NewSigningKeyset(amounts []uint64, privs []*rsa.PrivateKey, notBefore, notAfter, redeemUntil time.Time) (*SigningKeyset, error) {
	if len(amounts) != len(privs) {
		return nil, fmt.Errorf("%w: %d amounts, %d keys", ErrMalformed, len(amounts), len(privs))
	}
	dks := make([]DenomKey, len(privs))
	for i, k := range privs {
		if k.E != PublicExponent {
			return nil, fmt.Errorf("%w: public exponent %d", ErrMalformed, k.E)
		}
		dks[i] = DenomKey{Amount: amounts[i], Key: &k.PublicKey}
	}
	pub, err := NewKeyset(notBefore, notAfter, redeemUntil, dks)
	if err != nil {
		return nil, err
	}
	s := &SigningKeyset{pub: pub, priv: make([]*rsa.PrivateKey, len(pub.keys)), signers: make([]blindrsa.Signer, len(pub.keys))}
	for i, a := range amounts {
		j := pub.index(a)
		if s.priv[j] != nil {
			return nil, fmt.Errorf("%w: duplicate amount %d", ErrMalformed, a)
		}
		privs[i].Precompute()
		s.priv[j] = privs[i]
		s.signers[j] = blindrsa.NewSigner(privs[i])
	}
	return s, nil
}

// Public returns the public keyset.
func (s *SigningKeyset) Public() *Keyset { return s.pub }

// BlindSign signs one blinded message for amount. It fails with
// ErrDenomination for an amount without a key and ErrBadRequest for a
// blinded message of the wrong length or out of range.
func (s *SigningKeyset) BlindSign(amount uint64, blinded []byte) ([]byte, error) {
	i := s.pub.index(amount)
	if i < 0 {
		return nil, ErrDenomination
	}
	sig, err := s.signers[i].BlindSign(blinded)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	return sig, nil
}

// MarshalBinary encodes the keyset with its private keys:
// version(1) | not_before(8) | not_after(8) | redeem_until(8) | n(1) |
// (exp(1) | der_len(2) | PKCS#1 DER)*n.
func (s *SigningKeyset) MarshalBinary() ([]byte, error) {
	b := []byte{signingVersion}
	for _, t := range []time.Time{s.pub.notBefore, s.pub.notAfter, s.pub.redeemUntil} {
		b = appendU64(b, uint64(t.Unix()))
	}
	b = append(b, byte(len(s.priv)))
	for i, k := range s.priv {
		e, _ := denomExp(s.pub.keys[i].Amount)
		der := x509.MarshalPKCS1PrivateKey(k)
		b = append(b, e)
		b = appendU16(b, uint16(len(der)))
		b = append(b, der...)
	}
	return b, nil
}

// ParseSigningKeyset decodes MarshalBinary's output.
func ParseSigningKeyset(b []byte) (*SigningKeyset, error) {
	r := reader{b: b}
	if r.u8() != signingVersion {
		return nil, fmt.Errorf("%w: signing keyset version", ErrMalformed)
	}
	var ts [3]time.Time
	for i := range ts {
		v := r.u64()
		if v >= maxUnix {
			return nil, fmt.Errorf("%w: signing keyset time", ErrMalformed)
		}
		ts[i] = time.Unix(int64(v), 0).UTC()
	}
	n := int(r.u8())
	if n == 0 || n > MaxKeysPerKeyset {
		return nil, fmt.Errorf("%w: signing keyset count", ErrMalformed)
	}
	amounts := make([]uint64, n)
	privs := make([]*rsa.PrivateKey, n)
	for i := range n {
		e := r.u8()
		der := r.take(int(r.u16()))
		if r.bad || e > MaxDenomExp {
			return nil, fmt.Errorf("%w: signing keyset truncated", ErrMalformed)
		}
		k, err := x509.ParsePKCS1PrivateKey(der)
		if err != nil {
			return nil, fmt.Errorf("%w: private key: %v", ErrMalformed, err)
		}
		amounts[i], privs[i] = 1<<e, k
	}
	if !r.finish() {
		return nil, fmt.Errorf("%w: signing keyset trailing bytes", ErrMalformed)
	}
	return NewSigningKeyset(amounts, privs, ts[0], ts[1], ts[2])
}
