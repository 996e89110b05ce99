package rendezvous

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"github.com/flynn/noise"
	"golang.org/x/crypto/cryptobyte"
)

// The end-to-end handshake (PROTOCOL.md §7.4) is Noise_NK_25519_ChaChaPoly_SHA256
// with the service's per-publication static key from the descriptor. Its
// first message IS the introduction: Noise encrypts the payload (rendezvous
// point, one-time cookie, virtual port) to the service's static key, so the
// introduction point forwards an opaque blob. The service answers with the
// second message over the rendezvous, which gives both ends transport keys;
// the rendezvous node splices only ciphertext.
//
//	introduce payload = version(1)=1 | cookie(20) | port(2)
//	                  | rv_peer_len(1) | rv_peer | rv_onion_key(32)
//	                  | naddrs(1) | naddrs × (addr_len(2) | addr)
//	prologue          = "co-infuse hs v1" | identity key(32) | intro_id(16)
var hsSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherChaChaPoly, noise.HashSHA256)

const (
	hsPrologue  = "co-infuse hs v1"
	cookieLen   = 20
	introVer    = 1
	maxIntroLen = 1024 // bytes of one introduction message on the wire
)

// introPayload is what a client tells the service inside the introduction.
type introPayload struct {
	Cookie  [cookieLen]byte
	Port    uint16
	RVPeer  []byte
	RVOnion [32]byte
	RVAddrs [][]byte
}

func (p *introPayload) marshal() ([]byte, error) {
	if len(p.RVPeer) == 0 || len(p.RVPeer) > maxPeerIDLen || len(p.RVAddrs) > maxIntroAddrs {
		return nil, fmt.Errorf("%w: rendezvous point out of bounds", ErrBadIntroduce)
	}
	var b cryptobyte.Builder
	b.AddUint8(introVer)
	b.AddBytes(p.Cookie[:])
	b.AddUint16(p.Port)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(p.RVPeer) })
	b.AddBytes(p.RVOnion[:])
	b.AddUint8(uint8(len(p.RVAddrs)))
	for _, a := range p.RVAddrs {
		if len(a) == 0 || len(a) > maxAddrLen {
			return nil, fmt.Errorf("%w: address length", ErrBadIntroduce)
		}
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a) })
	}
	return b.Bytes()
}

func (p *introPayload) unmarshal(data []byte) error {
	s := cryptobyte.String(data)
	var ver, na uint8
	var cookie, onion []byte
	var peerB cryptobyte.String
	if !s.ReadUint8(&ver) || ver != introVer || !s.ReadBytes(&cookie, cookieLen) || !s.ReadUint16(&p.Port) ||
		!s.ReadUint8LengthPrefixed(&peerB) || !s.ReadBytes(&onion, 32) || !s.ReadUint8(&na) {
		return fmt.Errorf("%w: malformed payload", ErrBadIntroduce)
	}
	if p.Port == 0 || len(peerB) == 0 || len(peerB) > maxPeerIDLen || na > maxIntroAddrs {
		return fmt.Errorf("%w: payload out of bounds", ErrBadIntroduce)
	}
	copy(p.Cookie[:], cookie)
	copy(p.RVOnion[:], onion)
	p.RVPeer = append([]byte(nil), peerB...)
	p.RVAddrs = nil
	for range na {
		var a cryptobyte.String
		if !s.ReadUint16LengthPrefixed(&a) || len(a) == 0 || len(a) > maxAddrLen {
			return fmt.Errorf("%w: malformed address", ErrBadIntroduce)
		}
		p.RVAddrs = append(p.RVAddrs, append([]byte(nil), a...))
	}
	if !s.Empty() {
		return fmt.Errorf("%w: trailing bytes", ErrBadIntroduce)
	}
	return nil
}

func prologue(identity ed25519.PublicKey, introID [introIDLen]byte) []byte {
	p := make([]byte, 0, len(hsPrologue)+32+introIDLen)
	p = append(p, hsPrologue...)
	p = append(p, identity...)
	return append(p, introID[:]...)
}

// newIntroduction builds the client's introduction to the service whose
// static key is encKey; the returned state reads the service's answer.
func newIntroduction(encKey [32]byte, identity ed25519.PublicKey, introID [introIDLen]byte, p *introPayload) ([]byte, *noise.HandshakeState, error) {
	payload, err := p.marshal()
	if err != nil {
		return nil, nil, err
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: hsSuite, Random: rand.Reader, Pattern: noise.HandshakeNK, Initiator: true,
		Prologue: prologue(identity, introID), PeerStatic: encKey[:],
	})
	if err != nil {
		return nil, nil, err
	}
	msg, _, _, err := hs.WriteMessage(nil, payload)
	if err != nil {
		return nil, nil, err
	}
	if len(msg) > maxIntroLen {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrBadIntroduce, len(msg))
	}
	return msg, hs, nil
}

// openIntroduction decrypts an introduction with the service's static key;
// the returned state writes the answer (the second handshake message).
func openIntroduction(static noise.DHKey, identity ed25519.PublicKey, introID [introIDLen]byte, msg []byte) (*introPayload, *noise.HandshakeState, error) {
	if len(msg) > maxIntroLen {
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrBadIntroduce, len(msg))
	}
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite: hsSuite, Random: rand.Reader, Pattern: noise.HandshakeNK, Initiator: false,
		Prologue: prologue(identity, introID), StaticKeypair: static,
	})
	if err != nil {
		return nil, nil, err
	}
	payload, _, _, err := hs.ReadMessage(nil, msg)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: does not decrypt", ErrBadIntroduce)
	}
	var p introPayload
	if err := p.unmarshal(payload); err != nil {
		return nil, nil, err
	}
	return &p, hs, nil
}

// replayKey is what the replay caches remember of an introduction: its
// ephemeral key, which is unique to one client attempt.
func replayKey(msg []byte) (k [32]byte, ok bool) {
	if len(msg) < 32 {
		return k, false
	}
	copy(k[:], msg[:32]) // Noise NK message 1 starts with e
	return k, true
}
