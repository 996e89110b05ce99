package cell

import "bytes"

// allZero reports whether every byte of b is zero. Rather than testing bytes
// one by one, it checks that the first byte is zero and that every byte
// equals the one before it (b[1:] == b[:len-1]); bytes.Equal runs that
// comparison with wide vector loads and needs no zero buffer. Padding is not
// secret, so this need not run in constant time.
func allZero(b []byte) bool {
	return len(b) == 0 || (b[0] == 0 && bytes.Equal(b[1:], b[:len(b)-1]))
}
