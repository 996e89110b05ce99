package circuit

import (
	"crypto/rand"
	"fmt"

	"github.com/flynn/noise"
	"golang.org/x/crypto/curve25519"
)

// OnionKeyLen is the length of an onion key's private and public halves.
const OnionKeyLen = 32

// OnionKey is a relay's static X25519 key for the circuit handshake
// (PROTOCOL.md §4). Its public half is published in the relay's advert so
// clients can authenticate the hop before they reach it. An OnionKey is
// immutable and safe for concurrent use.
type OnionKey struct {
	kp noise.DHKey
}

// GenerateOnionKey returns a fresh onion key from crypto/rand.
func GenerateOnionKey() (*OnionKey, error) {
	kp, err := noise.DH25519.GenerateKeypair(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate onion key: %w", err)
	}
	return &OnionKey{kp: kp}, nil
}

// ParseOnionKey rebuilds an onion key from the 32 private bytes that Bytes
// returned. It rejects keys of the wrong length and keys whose public half
// would be a low-order point.
func ParseOnionKey(priv []byte) (*OnionKey, error) {
	if len(priv) != OnionKeyLen {
		return nil, fmt.Errorf("parse onion key: got %d bytes, want %d", len(priv), OnionKeyLen)
	}
	pub, err := curve25519.X25519(priv, curve25519.Basepoint)
	if err != nil {
		return nil, fmt.Errorf("parse onion key: %w", err)
	}
	k := &OnionKey{kp: noise.DHKey{Private: append([]byte(nil), priv...), Public: pub}}
	return k, nil
}

// Public returns the public half, the value published in adverts and passed
// to Build in HopInfo.OnionKey.
func (k *OnionKey) Public() [32]byte {
	var p [32]byte
	copy(p[:], k.kp.Public)
	return p
}

// Bytes returns a copy of the private half. The caller stores it with mode
// 0600 and never logs it.
func (k *OnionKey) Bytes() []byte {
	return append([]byte(nil), k.kp.Private...)
}
