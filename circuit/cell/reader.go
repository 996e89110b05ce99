package cell

import "encoding/binary"

// reader walks a relay-message body. Every read checks its bound and leaves
// ok false once the input ran short, so a parser reads all fields and checks
// once (the shape of cryptobyte.String, kept to the standard library).
type reader struct {
	b  []byte
	ok bool
}

func newReader(b []byte) reader { return reader{b: b, ok: true} }

// bytes returns the next n bytes, aliasing the input.
func (r *reader) bytes(n int) []byte {
	if !r.ok || n > len(r.b) {
		r.ok = false
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8 {
	v := r.bytes(1)
	if v == nil {
		return 0
	}
	return v[0]
}

func (r *reader) u16() uint16 {
	v := r.bytes(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (r *reader) u32() uint32 {
	v := r.bytes(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

// rest returns what is left, aliasing the input.
func (r *reader) rest() []byte {
	v := r.b
	r.b = nil
	return v
}

// done reports whether the input was long enough and fully consumed; it
// returns ErrShort or ErrTrailing wrapped with what otherwise.
func (r *reader) done(what string) error {
	if !r.ok {
		return wrap(what, ErrShort)
	}
	if len(r.b) != 0 {
		return wrap(what, ErrTrailing)
	}
	return nil
}
