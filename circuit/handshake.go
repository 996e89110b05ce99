package circuit

import (
	"crypto/subtle"
	"errors"
	"fmt"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/flynn/noise"
)

// PROTOCOL.md §4: Noise_NK_25519_AESGCM_SHA256 with a fixed prologue.
var (
	noiseSuite    = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)
	noisePrologue = []byte("co-infuse circuit v1")
)

// errHandshake is wrapped by every handshake failure; it is a protocol
// violation by the peer (or a wrong onion key on our side).
var errHandshake = fmt.Errorf("%w: circuit handshake failed", ErrProtocol)

// hopKeys is what a completed handshake yields for one hop (§4.2, §4.3).
type hopKeys struct {
	fwd, bwd [32]byte
	cookie   [cell.CookieLen]byte
}

// wipe zeroes the key material once the layers hold their own copies.
func (k *hopKeys) wipe() {
	clear(k.fwd[:])
	clear(k.bwd[:])
}

// wipeHandshake overwrites what this package can reach of a handshake that
// is done or abandoned (PROTOCOL.md §4.2): the local ephemeral private key
// and the handshake hash, which the noise package hands out as slices of
// its own state, and the split cipher states' keys, which Rekey replaces by
// a one-way function of themselves. Best effort: the chaining key, the
// handshake's own cipher key, the DH outputs and the AES key schedules
// inside flynn/noise and crypto/aes are unexported; they become garbage
// here and are overwritten only when the heap reuses them. hs and the
// cipher states may be nil.
func wipeHandshake(hs *noise.HandshakeState, css ...*noise.CipherState) {
	if hs != nil {
		clear(hs.LocalEphemeral().Private)
		clear(hs.ChannelBinding())
	}
	for _, cs := range css {
		if cs != nil {
			cs.Rekey()
		}
	}
}

// clientHandshake is the initiator's half-finished handshake with one hop.
type clientHandshake struct {
	hs *noise.HandshakeState
}

// startHandshake writes message 1 (-> e, es) to a hop whose onion key is
// pub, carrying offer (§4.1). The payload is encrypted to the hop's static
// onion key only: it is not forward secret (whoever later learns the onion
// key and kept the cell can read it), which is why it carries nothing but
// vouchers that the hop redeems at once.
func startHandshake(pub [32]byte, offer []byte) (*clientHandshake, []byte, error) {
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: noiseSuite,
		Pattern:     noise.HandshakeNK,
		Initiator:   true,
		Prologue:    noisePrologue,
		PeerStatic:  pub[:],
	})
	if err != nil {
		return nil, nil, fmt.Errorf("start handshake: %w", err)
	}
	msg, _, _, err := hs.WriteMessage(nil, offer)
	if err != nil {
		return nil, nil, fmt.Errorf("start handshake: %w", err)
	}
	return &clientHandshake{hs: hs}, msg, nil
}

// wipe erases the handshake state; the handshake cannot be used after.
// Safe to call more than once.
func (c *clientHandshake) wipe() {
	wipeHandshake(c.hs)
	c.hs = nil
}

// finish reads message 2 (<- e, ee) and returns the hop's keys and its
// answer (§4.1). The handshake state is wiped either way.
func (c *clientHandshake) finish(msg []byte) (hopKeys, cell.Answer, error) {
	var k hopKeys
	var a cell.Answer
	if c.hs == nil {
		return k, a, fmt.Errorf("%w: handshake already used", errHandshake)
	}
	payload, cs1, cs2, err := c.hs.ReadMessage(nil, msg)
	defer wipeHandshake(nil, cs1, cs2)
	c.wipe()
	if err != nil {
		return k, a, fmt.Errorf("%w: %w", errHandshake, err)
	}
	if cs1 == nil || cs2 == nil {
		return k, a, fmt.Errorf("%w: handshake not complete", errHandshake)
	}
	if err := a.UnmarshalBinary(payload); err != nil {
		return k, a, fmt.Errorf("%w: %w", errHandshake, err)
	}
	k.cookie = a.Cookie
	k.fwd = cs1.UnsafeKey()
	k.bwd = cs2.UnsafeKey()
	return k, a, nil
}

// serverHandshake is the responder's handshake between reading message 1
// and writing message 2.
type serverHandshake struct {
	hs *noise.HandshakeState
}

// readHandshake is the responder's first half: it reads message 1 with the
// onion key (one X25519 operation) and returns its payload, the offer
// (§4.1). The caller must call answer or wipe.
func readHandshake(key *OnionKey, msg1 []byte) (*serverHandshake, []byte, error) {
	if key == nil {
		return nil, nil, errors.New("accept handshake: no onion key")
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:   noiseSuite,
		Pattern:       noise.HandshakeNK,
		Initiator:     false,
		Prologue:      noisePrologue,
		StaticKeypair: key.kp,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("accept handshake: %w", err)
	}
	payload, _, _, err := hs.ReadMessage(nil, msg1)
	if err != nil {
		wipeHandshake(hs)
		return nil, nil, fmt.Errorf("%w: %w", errHandshake, err)
	}
	return &serverHandshake{hs: hs}, payload, nil
}

// wipe erases the handshake state. Safe to call more than once.
func (s *serverHandshake) wipe() {
	if s.hs != nil {
		wipeHandshake(s.hs)
		s.hs = nil
	}
}

// answer writes message 2 carrying ans and returns the hop's keys. The
// handshake state is wiped either way.
func (s *serverHandshake) answer(ans cell.Answer) (hopKeys, []byte, error) {
	var k hopKeys
	defer s.wipe()
	if s.hs == nil {
		return k, nil, errors.New("accept handshake: already answered")
	}
	payload, err := ans.AppendBinary(nil)
	if err != nil {
		return k, nil, fmt.Errorf("accept handshake: %w", err)
	}
	msg2, cs1, cs2, err := s.hs.WriteMessage(nil, payload)
	defer wipeHandshake(nil, cs1, cs2)
	if err != nil {
		return k, nil, fmt.Errorf("accept handshake: %w", err)
	}
	if cs1 == nil || cs2 == nil {
		return k, nil, errors.New("accept handshake: not complete")
	}
	k.cookie = ans.Cookie
	k.fwd = cs1.UnsafeKey()
	k.bwd = cs2.UnsafeKey()
	return k, msg2, nil
}

// acceptHandshake is the responder side for a free hop: it reads message 1
// (whose offer it ignores but for its format) and answers with message 2
// carrying cookie alone (§4.1).
func acceptHandshake(key *OnionKey, msg1 []byte, cookie [cell.CookieLen]byte) (hopKeys, []byte, error) {
	s, payload, err := readHandshake(key, msg1)
	if err != nil {
		return hopKeys{}, nil, err
	}
	var off cell.Offer
	if err := off.UnmarshalBinary(payload); err != nil {
		s.wipe()
		return hopKeys{}, nil, fmt.Errorf("%w: %w", errHandshake, err)
	}
	return s.answer(cell.Answer{Cookie: cookie})
}

// cookieEqual compares two session cookies in constant time (§3.1).
func cookieEqual(a, b []byte) bool {
	return subtle.ConstantTimeCompare(a, b) == 1
}
