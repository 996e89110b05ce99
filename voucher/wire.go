package voucher

import "encoding/binary"

// reader consumes a byte slice front to back. The first short read sets
// bad and every later read returns zero values, so a parser checks once at
// the end (reader.finish) instead of after every field.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) take(n int) []byte {
	if r.bad || n < 0 || len(r.b) < n {
		r.bad = true
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) u8() uint8 {
	b := r.take(1)
	if b == nil {
		return 0
	}
	return b[0]
}

func (r *reader) u16() uint16 {
	b := r.take(2)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func (r *reader) u32() uint32 {
	b := r.take(4)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint32(b)
}

func (r *reader) u64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// copyOut returns a copy of the next n bytes, so decoded structs never
// alias the caller's buffer.
func (r *reader) copyOut(n int) []byte {
	b := r.take(n)
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// finish reports whether every read succeeded and nothing is left over.
func (r *reader) finish() bool { return !r.bad && len(r.b) == 0 }

func appendU16(b []byte, v uint16) []byte { return binary.BigEndian.AppendUint16(b, v) }
func appendU32(b []byte, v uint32) []byte { return binary.BigEndian.AppendUint32(b, v) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// denomExp returns e with amount == 1<<e, or false if amount is not a power
// of two in 1..2^MaxDenomExp.
func denomExp(amount uint64) (uint8, bool) {
	if amount == 0 || amount&(amount-1) != 0 {
		return 0, false
	}
	for e := uint8(0); e <= MaxDenomExp; e++ {
		if amount == 1<<e {
			return e, true
		}
	}
	return 0, false
}
