package circuit

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// errAuth is returned when a layer's tag does not verify: a tampered,
// replayed, reordered or dropped cell, or a wrong key (PROTOCOL.md §3.3).
var errAuth = fmt.Errorf("%w: onion layer failed authentication", ErrProtocol)

// errCounter is returned after 2^64−1 cells in one direction; a nonce must
// never repeat under one key.
var errCounter = errors.New("circuit: layer counter exhausted")

// layer is one hop's AES-256-GCM state for one direction (PROTOCOL.md §3):
// a key and an implicit 64-bit counter. It seals and opens in place. A layer
// is not safe for concurrent use; its owner serialises calls (and the order
// of calls is the order of cells on the link).
type layer struct {
	aead cipher.AEAD
	ctr  uint64
	n    [12]byte // nonce scratch, kept here so Seal/Open do not allocate
}

func newLayer(key [32]byte) (*layer, error) {
	b, err := aes.NewCipher(key[:])
	if err != nil {
		return nil, fmt.Errorf("new layer: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("new layer: %w", err)
	}
	return &layer{aead: g}, nil
}

// nonce is 4 zero bytes then the big-endian counter (§3).
func (l *layer) nonce() ([]byte, error) {
	if l.ctr == ^uint64(0) {
		return nil, errCounter
	}
	binary.BigEndian.PutUint64(l.n[4:], l.ctr)
	l.ctr++
	return l.n[:], nil
}

// seal encrypts buf[:len(buf)-TagLen] in place and writes the tag into the
// last TagLen bytes of buf.
func (l *layer) seal(buf []byte) error {
	n, err := l.nonce()
	if err != nil {
		return err
	}
	l.aead.Seal(buf[:0], n, buf[:len(buf)-cell.TagLen], nil)
	return nil
}

// open authenticates and decrypts buf in place; on success the plaintext is
// buf[:len(buf)-TagLen]. The counter advances even on failure: a circuit
// whose layer fails is destroyed anyway.
func (l *layer) open(buf []byte) error {
	n, err := l.nonce()
	if err != nil {
		return err
	}
	if len(buf) < cell.TagLen {
		return errAuth
	}
	if _, err := l.aead.Open(buf[:0], n, buf, nil); err != nil {
		return errAuth
	}
	return nil
}

// Layer geometry (PROTOCOL.md §3.1, §3.2). On the client side the onion for
// hop k (1-based) starts at offset hdrLen·(k−1) of the body, so nested layers
// are sealed and opened without moving bytes.
const (
	// hdrLen is cookie(8) | kind(1), the plaintext header of every layer.
	hdrLen = cell.CookieLen + 1

	kindOnward = 0
	kindHere   = 1
)

// onionOff returns where hop depth's onion starts in a client-built body.
func onionOff(depth int) int { return hdrLen * (depth - 1) }
