package cell

import "testing"

func TestAllZero(t *testing.T) {
	t.Parallel()
	// Every length across the unrolled/word/byte paths, with one set bit at
	// every position, must agree with a byte loop.
	for n := 0; n <= 80; n++ {
		b := make([]byte, n)
		if !allZero(b) {
			t.Fatalf("len %d: zero slice reported non-zero", n)
		}
		for i := 0; i < n; i++ {
			for _, bit := range []byte{0x01, 0x80} {
				b[i] = bit
				if allZero(b) {
					t.Fatalf("len %d: byte %d = %#x not seen", n, i, bit)
				}
				b[i] = 0
			}
		}
	}
	// Unaligned sub-slices of a cell.
	c := new(Cell)
	c[Size-1] = 1
	for off := 0; off < 40; off++ {
		if allZero(c[off:]) {
			t.Fatalf("offset %d: last byte not seen", off)
		}
		if !allZero(c[off : Size-1]) {
			t.Fatalf("offset %d: zero range reported non-zero", off)
		}
	}
}
