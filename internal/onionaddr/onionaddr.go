package onionaddr

import (
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/base32"
	"errors"
	"strings"
)

// Sizes of the v3 address (rend-spec-v3 §6).
const (
	// IDLen is the length of a service id: base32 of the 35 raw bytes.
	IDLen = 56
	// Suffix ends every onion host.
	Suffix = ".onion"
	// Version is the address version byte, the last raw byte.
	Version = 3

	rawLen      = ed25519.PublicKeySize + 2 + 1
	checksumTag = ".onion checksum"
)

// Errors returned by Parse and ParseID; match with errors.Is.
var (
	ErrNotOnion = errors.New("onionaddr: not an .onion host")
	ErrLength   = errors.New("onionaddr: service id is not 56 characters (only v3 addresses are supported)")
	ErrBase32   = errors.New("onionaddr: service id is not base32")
	ErrVersion  = errors.New("onionaddr: address version is not 3")
	ErrChecksum = errors.New("onionaddr: address checksum does not match")
)

// lower is RFC 4648 base32 in lower case, no padding (56 characters hold 35
// bytes exactly).
var lower = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// checksum is the first two bytes of SHA3-256(".onion checksum" | pubkey |
// version) (rend-spec-v3 §6).
func checksum(pub []byte) [2]byte {
	h := sha3.New256()
	h.Write([]byte(checksumTag))
	h.Write(pub)
	h.Write([]byte{Version})
	var sum [32]byte
	h.Sum(sum[:0])
	return [2]byte{sum[0], sum[1]}
}

// ID returns the 56-character lower-case service id of pub, the form the
// control port reports as ServiceID. pub must be 32 bytes; ID panics
// otherwise, as crypto/ed25519 does for a public key of the wrong size.
func ID(pub ed25519.PublicKey) string {
	if len(pub) != ed25519.PublicKeySize {
		panic("onionaddr: bad public key length")
	}
	raw := make([]byte, 0, rawLen)
	raw = append(raw, pub...)
	sum := checksum(pub)
	raw = append(raw, sum[0], sum[1], Version)
	return lower.EncodeToString(raw)
}

// Encode returns the onion host of pub: ID(pub) + ".onion".
func Encode(pub ed25519.PublicKey) string { return ID(pub) + Suffix }

// ParseID decodes a 56-character service id (any case) and returns its
// public key, checking the version byte and the checksum.
func ParseID(id string) (ed25519.PublicKey, error) {
	if len(id) != IDLen {
		return nil, ErrLength
	}
	raw, err := lower.DecodeString(strings.ToLower(id))
	if err != nil || len(raw) != rawLen {
		return nil, ErrBase32
	}
	// rend-spec-v3 §6: pubkey(32) | checksum(2) | version(1).
	pub, sum, ver := raw[:32], raw[32:34], raw[34]
	if ver != Version {
		return nil, ErrVersion
	}
	if want := checksum(pub); sum[0] != want[0] || sum[1] != want[1] {
		return nil, ErrChecksum
	}
	return ed25519.PublicKey(pub), nil
}

// Parse decodes an onion host "[sub.]<id>.onion" (any case, subdomain
// labels ignored as Tor ignores them) and returns the service's public key.
func Parse(host string) (ed25519.PublicKey, error) {
	n := len(host) - len(Suffix)
	if n < 1 || !strings.EqualFold(host[n:], Suffix) {
		return nil, ErrNotOnion
	}
	name := host[:n]
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return ParseID(name)
}

// IsOnion reports whether host ends in ".onion" (any case), whether or not
// it is a valid address: such a host must never reach a resolver or an exit.
func IsOnion(host string) bool {
	n := len(host) - len(Suffix)
	return n >= 0 && strings.EqualFold(host[n:], Suffix)
}
