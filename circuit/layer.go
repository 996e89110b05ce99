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

// The onion operations below work in place on a 4091-byte RELAY body.
// They are pure (no I/O) so they can be tested against testdata vectors.

// peelForward is hop depth's step on a forward body (§3.1): it opens the
// layer at the front, checks the cookie in constant time and, for kind
// onward, moves the inner onion to the front and zero-fills the tail. For
// kind here the relay message is body[hdrLen : OnionLen(depth)-TagLen].
func peelForward(l *layer, cookie *[cell.CookieLen]byte, depth int, body []byte) (kind byte, err error) {
	n := cell.OnionLen(depth)
	if n == 0 || len(body) != cell.BodyLen {
		return 0, fmt.Errorf("%w: bad depth or body", ErrProtocol)
	}
	if err := l.open(body[:n]); err != nil {
		return 0, err
	}
	if !cookieEqual(body[:cell.CookieLen], cookie[:]) {
		return 0, fmt.Errorf("%w: wrong session cookie", errAuth)
	}
	switch kind = body[cell.CookieLen]; kind {
	case kindOnward:
		if depth >= cell.MaxHops {
			return 0, fmt.Errorf("%w: onion past the last hop", ErrProtocol)
		}
		inner := cell.OnionLen(depth + 1)
		copy(body, body[hdrLen:hdrLen+inner])
		clear(body[inner:])
	case kindHere:
	default:
		return 0, fmt.Errorf("%w: layer kind %d", ErrProtocol, kind)
	}
	return kind, nil
}

// wrapBackward is hop depth's step on a backward body from its next hop
// (§3.2): the first OnionLen(depth+1) bytes become the inner of a kind
// onward layer sealed with l.
func wrapBackward(l *layer, cookie *[cell.CookieLen]byte, depth int, body []byte) error {
	n := cell.OnionLen(depth)
	copy(body[hdrLen:], body[:n-cell.LayerOverhead])
	copy(body, cookie[:])
	body[cell.CookieLen] = kindOnward
	clear(body[n:])
	return l.seal(body[:n])
}

// sealHere seals a message hop depth originates (§3.2); the caller has
// encoded the relay message into body[hdrLen : OnionLen(depth)-TagLen] and
// left the rest of body zero.
func sealHere(l *layer, cookie *[cell.CookieLen]byte, depth int, body []byte) error {
	copy(body, cookie[:])
	body[cell.CookieLen] = kindHere
	return l.seal(body[:cell.OnionLen(depth)])
}

// onionKeys is the client's view of one hop for the onion operations.
type onionKeys struct {
	cookie   [cell.CookieLen]byte
	fwd, bwd *layer
}

// sealForward wraps a message for hop depth (1-based) in layers depth..1
// (§3.1). The caller has encoded the relay message at
// body[onionOff(depth)+hdrLen : onionOff(depth)+OnionLen(depth)-TagLen]
// with zeros elsewhere. hops[k-1] is hop k.
func sealForward(hops []*onionKeys, depth int, body []byte) error {
	for k := depth; k >= 1; k-- {
		h := hops[k-1]
		o := onionOff(k)
		copy(body[o:], h.cookie[:])
		body[o+cell.CookieLen] = kindOnward
		if k == depth {
			body[o+cell.CookieLen] = kindHere
		}
		if err := h.fwd.seal(body[o : o+cell.OnionLen(k)]); err != nil {
			return err
		}
	}
	return nil
}

// openBackward peels a backward body from hop 1 until a layer says
// "here" and returns that hop's depth and its relay-message region.
func openBackward(hops []*onionKeys, body []byte) (int, []byte, error) {
	for k := 1; k <= len(hops); k++ {
		h := hops[k-1]
		off, n := onionOff(k), cell.OnionLen(k)
		if err := h.bwd.open(body[off : off+n]); err != nil {
			return 0, nil, err
		}
		if !cookieEqual(body[off:off+cell.CookieLen], h.cookie[:]) {
			return 0, nil, fmt.Errorf("%w: wrong cookie from hop %d", errAuth, k)
		}
		switch body[off+cell.CookieLen] {
		case kindOnward:
		case kindHere:
			return k, body[off+hdrLen : off+n-cell.TagLen], nil
		default:
			return 0, nil, fmt.Errorf("%w: layer kind from hop %d", ErrProtocol, k)
		}
	}
	return 0, nil, fmt.Errorf("%w: onion past the last hop", ErrProtocol)
}
