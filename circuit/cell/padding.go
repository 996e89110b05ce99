package cell

import "encoding/binary"

// allZero reports whether every byte of b is zero. It ORs eight-byte words
// (32 bytes per round) instead of testing bytes one by one; padding is not
// secret, so it need not run in constant time.
func allZero(b []byte) bool {
	var acc uint64
	for len(b) >= 32 {
		acc |= binary.LittleEndian.Uint64(b[0:8]) |
			binary.LittleEndian.Uint64(b[8:16]) |
			binary.LittleEndian.Uint64(b[16:24]) |
			binary.LittleEndian.Uint64(b[24:32])
		if acc != 0 {
			return false
		}
		b = b[32:]
	}
	for len(b) >= 8 {
		acc |= binary.LittleEndian.Uint64(b[:8])
		b = b[8:]
	}
	for _, x := range b {
		acc |= uint64(x)
	}
	return acc == 0
}
