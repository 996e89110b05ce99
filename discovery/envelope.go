package discovery

import (
	"bytes"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"golang.org/x/crypto/cryptobyte"
)

// envelopeVersion is the first byte of a signed advert (DISCOVERY.md §3.1).
const envelopeVersion = 1

// signDomain separates advert signatures from every other use of a node's
// libp2p key (DISCOVERY.md §3.1).
const signDomain = "co-infuse advert v1\x00"

// SignAdvert encodes ad canonically and signs it with priv, which must be the
// key of ad.Peer. The result is what the advert protocol serves.
func SignAdvert(ad *Advert, priv crypto.PrivKey) ([]byte, error) {
	if priv == nil {
		return nil, fmt.Errorf("sign advert: %w: nil private key", ErrBadConfig)
	}
	id, err := peer.IDFromPrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sign advert: %w", err)
	}
	if id != ad.Peer {
		return nil, fmt.Errorf("sign advert: %w: key is not the advert's peer", ErrKeyMismatch)
	}
	body, err := encodeBody(ad)
	if err != nil {
		return nil, fmt.Errorf("sign advert: %w", err)
	}
	pk, err := crypto.MarshalPublicKey(priv.GetPublic())
	if err != nil {
		return nil, fmt.Errorf("sign advert: %w", err)
	}
	sig, err := priv.Sign(signedMessage(body))
	if err != nil {
		return nil, fmt.Errorf("sign advert: %w", err)
	}
	var b cryptobyte.Builder
	b.AddUint8(envelopeVersion)
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(pk) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(body) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sig) })
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("sign advert: %w: %v", ErrTooLarge, err)
	}
	if len(out) > MaxEnvelopeSize {
		return nil, fmt.Errorf("sign advert: %w: %d bytes", ErrTooLarge, len(out))
	}
	return out, nil
}

func signedMessage(body []byte) []byte {
	m := make([]byte, 0, len(signDomain)+len(body))
	m = append(m, signDomain...)
	return append(m, body...)
}

// OpenAdvert parses a signed advert and checks, in order: size caps, the
// encoding, that the embedded public key hashes to the advert's peer ID, the
// signature, and freshness at now (expired, or expiring further ahead than
// MaxAdvertLifetime). It does not check the sequence number against earlier
// adverts; the Service does that. Errors wrap the sentinels in errors.go.
func OpenAdvert(env []byte, now time.Time) (Advert, error) {
	ad, err := openUnchecked(env)
	if err != nil {
		return Advert{}, err
	}
	if !ad.Fresh(now) {
		return Advert{}, fmt.Errorf("open advert: %w", ErrExpired)
	}
	if ad.Expiry.After(now.Add(MaxAdvertLifetime)) {
		return Advert{}, fmt.Errorf("open advert: %w", ErrTooFarAhead)
	}
	return ad, nil
}

// signedBody returns the body of an envelope (not verified).
func signedBody(env []byte) ([]byte, bool) {
	s := cryptobyte.String(env)
	var ver uint8
	var pkb, body cryptobyte.String
	if !s.ReadUint8(&ver) || ver != envelopeVersion ||
		!s.ReadUint16LengthPrefixed(&pkb) || !s.ReadUint16LengthPrefixed(&body) {
		return nil, false
	}
	return body, true
}

// sameBody reports whether two envelopes carry the same signed body, which
// is what a node commits to: envelopes may differ in encoding details a
// relaying witness could change (and signatures may be re-randomised), the
// signed body cannot.
func sameBody(a, b []byte) (bool, error) {
	ba, ok1 := signedBody(a)
	bb, ok2 := signedBody(b)
	if !ok1 || !ok2 {
		return false, fmt.Errorf("open advert: %w: envelope", ErrMalformed)
	}
	return bytes.Equal(ba, bb), nil
}

// openUnchecked does everything OpenAdvert does except the time checks.
func openUnchecked(env []byte) (Advert, error) {
	if len(env) > MaxEnvelopeSize {
		return Advert{}, fmt.Errorf("open advert: %w: %d bytes", ErrTooLarge, len(env))
	}
	s := cryptobyte.String(env)
	var ver uint8
	var pkb, body, sig cryptobyte.String
	if !s.ReadUint8(&ver) || ver != envelopeVersion ||
		!s.ReadUint16LengthPrefixed(&pkb) || !s.ReadUint16LengthPrefixed(&body) ||
		!s.ReadUint16LengthPrefixed(&sig) || !s.Empty() {
		return Advert{}, fmt.Errorf("open advert: %w: envelope", ErrMalformed)
	}
	if len(pkb) > MaxPublicKeySize || len(sig) > MaxSignatureSize {
		return Advert{}, fmt.Errorf("open advert: %w: key or signature", ErrTooLarge)
	}
	ad, err := decodeBody(body)
	if err != nil {
		return Advert{}, fmt.Errorf("open advert: %w", err)
	}
	pub, err := crypto.UnmarshalPublicKey(pkb)
	if err != nil {
		return Advert{}, fmt.Errorf("open advert: %w: public key: %v", ErrMalformed, err)
	}
	// Only the canonical key encoding: one key, one envelope form.
	if canon, err := crypto.MarshalPublicKey(pub); err != nil || !bytes.Equal(canon, pkb) {
		return Advert{}, fmt.Errorf("open advert: %w: public key not canonically encoded", ErrMalformed)
	}
	// Only the canonical body: the bytes signed are the one encoding of the
	// advert, so two different signed bodies are two different adverts.
	if canon, err := encodeBody(&ad); err != nil || !bytes.Equal(canon, body) {
		return Advert{}, fmt.Errorf("open advert: %w: body not canonically encoded", ErrMalformed)
	}
	if !ad.Peer.MatchesPublicKey(pub) {
		return Advert{}, fmt.Errorf("open advert: %w", ErrKeyMismatch)
	}
	ok, err := pub.Verify(signedMessage(body), sig)
	if err != nil || !ok {
		return Advert{}, fmt.Errorf("open advert: %w", ErrBadSignature)
	}
	return ad, nil
}
