package rendezvous

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha3"
	"encoding/binary"
	"fmt"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/cryptobyte"
)

// Descriptor wire format, version 1 (PROTOCOL.md §7.2). The outer layer is
// readable by HSDirs and signed by the blinded key; the body is encrypted
// under a key derived from the service's identity key, so only a holder of
// the onion address can read the introduction points.
//
//	outer = version(1)=1 | blinded_key(32) | period(8) | period_len(4)
//	      | revision(8) | expires(8) | body_len(2) | body | signature(64)
//	body  = nonce(24) | XChaCha20-Poly1305(descKey, nonce, inner, ad=outer prefix)
//	inner = version(1)=1 | enc_key(32) | pow_effort(1) | n(1) | n × intro
//	intro = intro_id(16) | peer_len(1) | peer | onion_key(32)
//	      | naddrs(1) | naddrs × (addr_len(2) | addr)
//
// signature = Ed25519(blinded key, descSigContext | every outer byte before it).
const (
	descVersion      = 1
	descSigContext   = "co-infuse hs descriptor v1"
	descKeyContext   = "co-infuse hs descriptor key v1"
	indexContext     = "co-infuse hs index v1"
	MaxDescriptorLen = 8192 // bytes, whole outer descriptor
	MaxIntroPoints   = 8
	maxIntroAddrs    = 8
	maxAddrLen       = 256
	maxPeerIDLen     = 64
	introIDLen       = 16
	outerFixedLen    = 1 + 32 + 8 + 4 + 8 + 8 + 2 + ed25519.SignatureSize
)

// IntroPoint is one introduction point in a descriptor: the node (peer ID
// bytes, onion key, multiaddr bytes, as circuit.HopInfo needs them) and the
// intro ID the service registered there.
type IntroPoint struct {
	ID       [introIDLen]byte
	Peer     []byte   // libp2p peer ID bytes
	OnionKey [32]byte // the node's circuit onion key
	Addrs    [][]byte // multiaddr bytes
}

// Descriptor is a decoded, verified and decrypted descriptor.
type Descriptor struct {
	Blinded   ed25519.PublicKey
	Period    uint64
	PeriodLen uint32 // seconds
	Revision  uint64
	Expires   time.Time
	// EncKey is the service's X25519 Noise static key for this
	// publication (the introduction is encrypted to it).
	EncKey [32]byte
	// PoWEffort is the proof of work its intro points ask of an
	// introduction, in leading zero bits (0 = none; pow.go).
	PoWEffort uint8
	Intros    []IntroPoint
}

// Outer is what an HSDir learns of a descriptor: the blinded key, period,
// revision and expiry, all covered by a checked signature.
type Outer struct {
	Blinded   ed25519.PublicKey
	Period    uint64
	PeriodLen uint32
	Revision  uint64
	Expires   time.Time
	body      []byte
}

// Index returns the storage key of the descriptors of blinded key b in
// period: SHA3-256(indexContext | b | INT_8(period) | INT_8(periodLen)).
// It is what HSDirs provide in the DHT; without the onion address nobody
// can tell which service it belongs to or link two periods.
func Index(b ed25519.PublicKey, period uint64, periodLen uint32) [32]byte {
	h := sha3.New256()
	h.Write([]byte(indexContext))
	h.Write(b)
	var n [12]byte
	binary.BigEndian.PutUint64(n[:8], period)
	binary.BigEndian.PutUint32(n[8:], periodLen)
	h.Write(n[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// descKey derives the body key from the identity key and the blinded key.
func descKey(identity, blinded ed25519.PublicKey, period uint64) []byte {
	h := sha3.New256()
	h.Write([]byte(descKeyContext))
	h.Write(identity)
	h.Write(blinded)
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], period)
	h.Write(n[:])
	return h.Sum(nil)
}

// PeriodOf returns the time period number of t for periods of periodLen
// seconds, offset by half a period as Tor's (rend-spec-v3 §2.2.1) so that
// periods do not turn over at midnight UTC.
func PeriodOf(t time.Time, periodLen uint32) uint64 {
	u := t.Unix() - int64(periodLen)/2
	if u < 0 {
		return 0
	}
	return uint64(u) / uint64(periodLen)
}

// periodStart is the first second of period.
func periodStart(period uint64, periodLen uint32) time.Time {
	return time.Unix(int64(period*uint64(periodLen))+int64(periodLen)/2, 0)
}

// encodeDescriptor builds, encrypts and signs d with the blinded signer of
// identity for d.Period. d.Blinded is ignored (taken from signer).
func encodeDescriptor(d *Descriptor, identity ed25519.PublicKey, signer *expandedSigner) ([]byte, error) {
	if len(d.Intros) == 0 || len(d.Intros) > MaxIntroPoints {
		return nil, fmt.Errorf("%w: %d intro points", ErrBadDescriptor, len(d.Intros))
	}
	var in cryptobyte.Builder
	in.AddUint8(descVersion)
	in.AddBytes(d.EncKey[:])
	if d.PoWEffort > MaxPoWEffort {
		return nil, fmt.Errorf("%w: %w", ErrBadDescriptor, errPoWTooHard)
	}
	in.AddUint8(d.PoWEffort)
	in.AddUint8(uint8(len(d.Intros)))
	for _, ip := range d.Intros {
		if len(ip.Peer) == 0 || len(ip.Peer) > maxPeerIDLen || len(ip.Addrs) > maxIntroAddrs {
			return nil, fmt.Errorf("%w: intro point out of bounds", ErrBadDescriptor)
		}
		in.AddBytes(ip.ID[:])
		in.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(ip.Peer) })
		in.AddBytes(ip.OnionKey[:])
		in.AddUint8(uint8(len(ip.Addrs)))
		for _, a := range ip.Addrs {
			if len(a) == 0 || len(a) > maxAddrLen {
				return nil, fmt.Errorf("%w: address length %d", ErrBadDescriptor, len(a))
			}
			in.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(a) })
		}
	}
	inner, err := in.Bytes()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDescriptor, err)
	}
	blinded := signer.Public()
	var head cryptobyte.Builder
	head.AddUint8(descVersion)
	head.AddBytes(blinded)
	head.AddUint64(d.Period)
	head.AddUint32(d.PeriodLen)
	head.AddUint64(d.Revision)
	head.AddUint64(uint64(d.Expires.Unix()))
	prefix, _ := head.Bytes()
	aead, err := chacha20poly1305.NewX(descKey(identity, blinded, d.Period))
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(inner)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	body := aead.Seal(nonce, nonce, inner, prefix)
	out := make([]byte, 0, len(prefix)+2+len(body)+ed25519.SignatureSize)
	out = append(out, prefix...)
	out = binary.BigEndian.AppendUint16(out, uint16(len(body)))
	out = append(out, body...)
	out = append(out, signer.Sign(append([]byte(descSigContext), out...))...)
	if len(out) > MaxDescriptorLen {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrBadDescriptor, len(out), MaxDescriptorLen)
	}
	return out, nil
}

// ParseOuter parses raw and checks its signature under the blinded key it
// names; it does not decrypt the body and checks no period (the caller
// knows which periods it accepts). HSDirs store only what passes.
func ParseOuter(raw []byte) (*Outer, error) {
	if len(raw) < outerFixedLen || len(raw) > MaxDescriptorLen {
		return nil, fmt.Errorf("%w: length %d", ErrBadDescriptor, len(raw))
	}
	s := cryptobyte.String(raw[:len(raw)-ed25519.SignatureSize])
	sig := raw[len(raw)-ed25519.SignatureSize:]
	var (
		ver     uint8
		blinded []byte
		o       Outer
		expires uint64
		body    cryptobyte.String
	)
	if !s.ReadUint8(&ver) || ver != descVersion {
		return nil, fmt.Errorf("%w: version", ErrBadDescriptor)
	}
	if !s.ReadBytes(&blinded, 32) || !s.ReadUint64(&o.Period) || !s.ReadUint32(&o.PeriodLen) ||
		!s.ReadUint64(&o.Revision) || !s.ReadUint64(&expires) || !s.ReadUint16LengthPrefixed(&body) || !s.Empty() {
		return nil, fmt.Errorf("%w: malformed outer layer", ErrBadDescriptor)
	}
	if o.PeriodLen == 0 || expires > 1<<62 {
		return nil, fmt.Errorf("%w: period length or expiry out of range", ErrBadDescriptor)
	}
	msg := append([]byte(descSigContext), raw[:len(raw)-ed25519.SignatureSize]...)
	if !ed25519.Verify(ed25519.PublicKey(blinded), msg, sig) {
		return nil, fmt.Errorf("%w: signature", ErrBadDescriptor)
	}
	o.Blinded = ed25519.PublicKey(append([]byte(nil), blinded...))
	o.Expires = time.Unix(int64(expires), 0)
	o.body = append([]byte(nil), body...)
	return &o, nil
}

// Index is o's storage key.
func (o *Outer) Index() [32]byte { return Index(o.Blinded, o.Period, o.PeriodLen) }

// CheckPeriod refuses o unless its period is the current one at now or its
// neighbour (clock skew, the overlap at a turn), and it has not expired.
func (o *Outer) CheckPeriod(now time.Time, periodLen uint32) error {
	if o.PeriodLen != periodLen {
		return fmt.Errorf("%w: period length %d, want %d", ErrWrongPeriod, o.PeriodLen, periodLen)
	}
	cur := PeriodOf(now, periodLen)
	if o.Period+1 < cur || o.Period > cur+1 {
		return fmt.Errorf("%w: period %d, now %d", ErrWrongPeriod, o.Period, cur)
	}
	if !now.Before(o.Expires) {
		return fmt.Errorf("%w: expired", ErrWrongPeriod)
	}
	return nil
}

// DecodeDescriptor parses and verifies raw as a descriptor of the service
// identity for period (the client derived both from the onion address and
// its clock), and decrypts its body. A descriptor signed by another key,
// for another period, expired at now, or whose body does not decrypt is
// refused with an error wrapping ErrBadDescriptor or ErrWrongPeriod.
func DecodeDescriptor(raw []byte, identity ed25519.PublicKey, period uint64, periodLen uint32, now time.Time) (*Descriptor, error) {
	o, err := ParseOuter(raw)
	if err != nil {
		return nil, err
	}
	if o.Period != period || o.PeriodLen != periodLen {
		return nil, fmt.Errorf("%w: period %d, want %d", ErrWrongPeriod, o.Period, period)
	}
	want, err := BlindPublic(identity, period, uint64(periodLen))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadDescriptor, err)
	}
	if !want.Equal(o.Blinded) {
		return nil, fmt.Errorf("%w: signed by a key not blinded from this address", ErrBadDescriptor)
	}
	if !now.Before(o.Expires) {
		return nil, fmt.Errorf("%w: expired", ErrWrongPeriod)
	}
	d, err := decryptBody(o, identity)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// decryptBody opens o's body with the key of identity and parses it.
func decryptBody(o *Outer, identity ed25519.PublicKey) (*Descriptor, error) {
	aead, err := chacha20poly1305.NewX(descKey(identity, o.Blinded, o.Period))
	if err != nil {
		return nil, err
	}
	if len(o.body) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: body too short", ErrBadDescriptor)
	}
	var head cryptobyte.Builder
	head.AddUint8(descVersion)
	head.AddBytes(o.Blinded)
	head.AddUint64(o.Period)
	head.AddUint32(o.PeriodLen)
	head.AddUint64(o.Revision)
	head.AddUint64(uint64(o.Expires.Unix()))
	prefix, _ := head.Bytes()
	nonce, ct := o.body[:aead.NonceSize()], o.body[aead.NonceSize():]
	inner, err := aead.Open(nil, nonce, ct, prefix)
	if err != nil {
		return nil, fmt.Errorf("%w: body does not decrypt", ErrBadDescriptor)
	}
	d := &Descriptor{Blinded: o.Blinded, Period: o.Period, PeriodLen: o.PeriodLen, Revision: o.Revision, Expires: o.Expires}
	if err := parseInner(inner, d); err != nil {
		return nil, err
	}
	return d, nil
}

// parseInner parses the decrypted body into d.
func parseInner(inner []byte, d *Descriptor) error {
	s := cryptobyte.String(inner)
	var ver, n uint8
	var enc []byte
	if !s.ReadUint8(&ver) || ver != descVersion || !s.ReadBytes(&enc, 32) || !s.ReadUint8(&d.PoWEffort) || !s.ReadUint8(&n) {
		return fmt.Errorf("%w: malformed body", ErrBadDescriptor)
	}
	if d.PoWEffort > MaxPoWEffort {
		return fmt.Errorf("%w: %w", ErrBadDescriptor, errPoWTooHard)
	}
	if n == 0 || n > MaxIntroPoints {
		return fmt.Errorf("%w: %d intro points", ErrBadDescriptor, n)
	}
	copy(d.EncKey[:], enc)
	for range n {
		var ip IntroPoint
		var id, key []byte
		var peerB cryptobyte.String
		var na uint8
		if !s.ReadBytes(&id, introIDLen) || !s.ReadUint8LengthPrefixed(&peerB) || !s.ReadBytes(&key, 32) || !s.ReadUint8(&na) {
			return fmt.Errorf("%w: malformed intro point", ErrBadDescriptor)
		}
		if len(peerB) == 0 || len(peerB) > maxPeerIDLen || na > maxIntroAddrs {
			return fmt.Errorf("%w: intro point out of bounds", ErrBadDescriptor)
		}
		copy(ip.ID[:], id)
		ip.Peer = append([]byte(nil), peerB...)
		copy(ip.OnionKey[:], key)
		for range na {
			var a cryptobyte.String
			if !s.ReadUint16LengthPrefixed(&a) || len(a) == 0 || len(a) > maxAddrLen {
				return fmt.Errorf("%w: malformed intro address", ErrBadDescriptor)
			}
			ip.Addrs = append(ip.Addrs, append([]byte(nil), a...))
		}
		d.Intros = append(d.Intros, ip)
	}
	if !s.Empty() {
		return fmt.Errorf("%w: trailing bytes", ErrBadDescriptor)
	}
	return nil
}
