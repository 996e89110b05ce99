package rendezvous

import (
	"context"
	"crypto/sha3"
	"encoding/binary"
	"errors"
	"math/bits"
)

// Proof of work on introductions (PROTOCOL.md §7.3; Tor's onion-service
// PoW defence is the model, with a plain hash puzzle instead of Equi-X).
// A service that sets an effort E (leading zero bits, 0 = off) announces
// it in its descriptor and in each intro hold; the intro point forwards an
// introduction only with a nonce such that
//
//	SHA3-256("co-infuse intro pow v1" | intro_id | message | nonce(8))
//
// starts with E zero bits. That costs a client about 2^E hashes per
// introduction and the intro point one hash to check, before the rate
// limit and the replay cache. The nonce binds the message, so a solution
// cannot be reused for another introduction.
const (
	powContext = "co-infuse intro pow v1"
	// MaxPoWEffort bounds the effort a service may ask (2^24 hashes is
	// seconds of one core).
	MaxPoWEffort = 24
	powNonceLen  = 8
)

// errPoWTooHard: a descriptor or hold asked more than MaxPoWEffort.
var errPoWTooHard = errors.New("rendezvous: proof-of-work effort above the maximum")

func powHash(id [introIDLen]byte, msg []byte, nonce [powNonceLen]byte) [32]byte {
	h := sha3.New256()
	h.Write([]byte(powContext))
	h.Write(id[:])
	h.Write(msg)
	h.Write(nonce[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// powOK reports whether nonce solves the puzzle of msg at effort.
func powOK(id [introIDLen]byte, msg []byte, nonce [powNonceLen]byte, effort uint8) bool {
	if effort == 0 {
		return true
	}
	if effort > MaxPoWEffort {
		return false
	}
	return leadingZeros(powHash(id, msg, nonce)) >= int(effort)
}

func leadingZeros(h [32]byte) int {
	n := 0
	for _, b := range h {
		if b != 0 {
			return n + bits.LeadingZeros8(b)
		}
		n += 8
	}
	return n
}

// solvePoW finds a nonce for msg at effort, checking ctx every 4096 tries.
func solvePoW(ctx context.Context, id [introIDLen]byte, msg []byte, effort uint8) ([powNonceLen]byte, error) {
	var nonce [powNonceLen]byte
	if effort == 0 {
		return nonce, nil
	}
	if effort > MaxPoWEffort {
		return nonce, errPoWTooHard
	}
	for i := uint64(0); ; i++ {
		binary.BigEndian.PutUint64(nonce[:], i)
		if powOK(id, msg, nonce, effort) {
			return nonce, nil
		}
		if i%4096 == 0 && ctx.Err() != nil {
			return nonce, ctx.Err()
		}
	}
}
