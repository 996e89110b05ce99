package voucher

import (
	"crypto/rsa"
	"crypto/sha3"
	"fmt"
	"io"

	"github.com/cloudflare/circl/blindsign/blindrsa"
)

// variant is the RFC 9474 variant used for vouchers. The message is already
// a uniformly random 32-byte secret, so the randomized variants' extra
// prefix adds nothing; PSS (48-byte salt) keeps signatures randomized.
const variant = blindrsa.SHA384PSSDeterministic

// Seed is the client's per-voucher secret state. The voucher's secret and
// all blinding randomness are derived from it (VOUCHERS.md §2.2), so a
// wallet that stores only the seed can rebuild the exact blinded message and
// unblinding state after a crash and retry a mint request byte for byte.
type Seed [32]byte

func (s *Seed) stream(tag string) io.Reader {
	x := sha3.NewSHAKE256()
	x.Write([]byte(tag))
	x.Write(s[:])
	return x
}

// Secret returns the voucher secret derived from the seed.
func (s *Seed) Secret() [SecretSize]byte {
	var out [SecretSize]byte
	io.ReadFull(s.stream("co-infuse/voucher/secret/1"), out[:]) // SHAKE never fails
	return out
}

// Blinded is one voucher in the middle of minting: the blinded message sent
// to the node and the state needed to unblind its answer.
type Blinded struct {
	// Amount is the denomination in sats.
	Amount uint64
	// Msg is the blinded message (the modulus length of the key).
	Msg []byte

	secret [SecretSize]byte
	client blindrsa.Client
	state  blindrsa.State
}

// Blind prepares the voucher of seed for amount under key. The result is a
// deterministic function of (seed, amount, key).
func Blind(seed Seed, amount uint64, key *rsa.PublicKey) (*Blinded, error) {
	secret := seed.Secret()
	b, err := blindWith(variant, key, seed.stream("co-infuse/voucher/blind/1"), secret[:])
	if err != nil {
		return nil, err
	}
	b.Amount, b.secret = amount, secret
	return b, nil
}

// blindWith blinds a prepared message with randomness from rnd (salt, then
// the blinding factor, in circl's order). The RFC 9474 vector test drives
// it with the vectors' salt and blind.
func blindWith(v blindrsa.Variant, key *rsa.PublicKey, rnd io.Reader, prepared []byte) (*Blinded, error) {
	c, err := blindrsa.NewClient(v, key)
	if err != nil {
		return nil, fmt.Errorf("blind: %w", err)
	}
	msg, st, err := c.Blind(rnd, prepared)
	if err != nil {
		return nil, fmt.Errorf("blind: %w", err)
	}
	return &Blinded{Msg: msg, client: c, state: st}, nil
}

// Finalize unblinds the node's blind signature and verifies the result. A
// signature that does not verify yields ErrBadSignature: the node signed
// with a key other than the published one, or sent garbage.
func (b *Blinded) Finalize(keyset KeysetID, blindSig []byte) (Voucher, error) {
	sig, err := b.client.Finalize(b.state, blindSig)
	if err != nil {
		return Voucher{}, fmt.Errorf("%w: finalize: %v", ErrBadSignature, err)
	}
	return Voucher{Keyset: keyset, Amount: b.Amount, Secret: b.secret, Sig: sig}, nil
}
