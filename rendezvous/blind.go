package rendezvous

import (
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/binary"
	"errors"

	"filippo.io/edwards25519"
)

// Key blinding (rend-spec-v3 §2.2.1 and appendix A.2, written afresh): for
// each time period the service signs its descriptor with a blinded key
// A' = h·A, h = clamp(SHA3-256(blindString | A | B | N)), N = "key-blind" |
// INT_8(period) | INT_8(periodLength). Anyone who knows A (the onion
// address) can derive A' for any period; an HSDir that sees A' learns
// neither A nor the A' of another period, so stored descriptors cannot be
// listed by service or linked across periods.

// blindString and blindPrefixString are the domain separators of the
// blinding factor and of the blinded key's nonce prefix.
const (
	blindString       = "Derive temporary signing key\x00"
	blindPrefixString = "Derive temporary signing key hash input"
	// basePointString names the ed25519 base point B in the factor's hash,
	// as Tor does.
	basePointString = "(15112221349535400772501151409588531511454012693041857206046113283949847762202, 46316835694926478169428394003475163141307993866256225615783033603165251855960)"
)

// errBadPublicKey: a 32-byte string that is not a point on the curve.
var errBadPublicKey = errors.New("public key is not a valid ed25519 point")

// blindFactor returns the clamped blinding factor h for pub and period.
func blindFactor(pub ed25519.PublicKey, period uint64, periodLen uint64) *edwards25519.Scalar {
	h := sha3.New256()
	h.Write([]byte(blindString))
	h.Write(pub)
	h.Write([]byte(basePointString))
	var n [8]byte
	h.Write([]byte("key-blind"))
	binary.BigEndian.PutUint64(n[:], period)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], periodLen)
	h.Write(n[:])
	sum := h.Sum(nil)
	s, err := edwards25519.NewScalar().SetBytesWithClamping(sum)
	if err != nil {
		panic("rendezvous: 32-byte hash refused by SetBytesWithClamping") // unreachable: length is 32
	}
	return s
}

// BlindPublic returns the blinded public key A' of pub for period (the
// period number and its length in seconds). It fails if pub is not a point.
func BlindPublic(pub ed25519.PublicKey, period, periodLen uint64) (ed25519.PublicKey, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, errBadPublicKey
	}
	A, err := new(edwards25519.Point).SetBytes(pub)
	if err != nil {
		return nil, errBadPublicKey
	}
	Ab := new(edwards25519.Point).ScalarMult(blindFactor(pub, period, periodLen), A)
	return ed25519.PublicKey(Ab.Bytes()), nil
}

// expandedSigner signs with an ed25519 key given as a scalar and a nonce
// prefix (RFC 8032 §5.1.6 after the key expansion step), the form of both
// Tor's expanded service keys and blinded keys.
type expandedSigner struct {
	s      *edwards25519.Scalar
	prefix [32]byte
	pub    ed25519.PublicKey
}

// signerOf returns the signer of k's expanded key.
func signerOf(k Key) *expandedSigner {
	return &expandedSigner{s: k.scalar(), prefix: k.prefix, pub: k.Public()}
}

// blind returns the signer of the blinded key for period: scalar h·a mod l
// and prefix SHA3-256(blindPrefixString | prefix)[:32].
func (e *expandedSigner) blind(period, periodLen uint64) *expandedSigner {
	h := blindFactor(e.pub, period, periodLen)
	b := &expandedSigner{s: edwards25519.NewScalar().Multiply(h, e.s)}
	ph := sha3.New256()
	ph.Write([]byte(blindPrefixString))
	ph.Write(e.prefix[:])
	copy(b.prefix[:], ph.Sum(nil))
	b.pub = ed25519.PublicKey(new(edwards25519.Point).ScalarBaseMult(b.s).Bytes())
	return b
}

// Public returns the signer's public key.
func (e *expandedSigner) Public() ed25519.PublicKey { return e.pub }

// Sign returns an ed25519 signature of msg that crypto/ed25519.Verify
// accepts under e.Public().
func (e *expandedSigner) Sign(msg []byte) []byte {
	return signExpanded(e.s, e.prefix[:], e.pub, msg)
}
