package voucher

import (
	"bytes"
	"errors"
	"testing"
)

func checkStateRequestRoundTrip(b []byte) ([]byte, error) {
	m, err := ParseCheckStateRequest(b)
	if err != nil {
		return nil, err
	}
	return m.MarshalBinary()
}

func checkStateResponseRoundTrip(b []byte) ([]byte, error) {
	m, err := ParseCheckStateResponse(b)
	if err != nil {
		return nil, err
	}
	return m.MarshalBinary()
}

// TestCheckStateCodec: encodings of the check-state messages decode to the
// same values and re-encode to the same bytes; malformed ones fail with
// ErrMalformed.
func TestCheckStateCodec(t *testing.T) {
	t.Parallel()
	req := CheckStateRequest{Refs: []SpendRef{{Keyset: KeysetID{1, 2, 3, 4, 5, 6, 7, 8}, ID: [32]byte{9}}, {ID: [32]byte{31: 1}}}}
	b, err := req.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 2+2*40 || b[0] != byte(MsgCheckState) || b[1] != 2 {
		t.Fatalf("request encoding %x", b)
	}
	got, err := ParseCheckStateRequest(b)
	if err != nil || len(got.Refs) != 2 || got.Refs[0] != req.Refs[0] || got.Refs[1] != req.Refs[1] {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	resp := CheckStateResponse{States: []uint8{StateSpent, StateUnspent}}
	rb, err := resp.MarshalBinary()
	if err != nil || !bytes.Equal(rb, []byte{7, 2, 1, 0}) {
		t.Fatalf("response encoding %x, %v", rb, err)
	}
	bad := [][]byte{
		{}, {6}, {6, 0}, append([]byte{6, 1}, make([]byte, 39)...), append([]byte{6, 1}, make([]byte, 41)...),
		append([]byte{6, 65}, make([]byte, 65*40)...), {7, 1}, {7, 1, 2}, {7, 0}, {7, 2, 0}, {7, 1, 0, 0}, {5, 1, 0},
	}
	for _, b := range bad {
		_, err1 := ParseCheckStateRequest(b)
		_, err2 := ParseCheckStateResponse(b)
		if !errors.Is(err1, ErrMalformed) || !errors.Is(err2, ErrMalformed) {
			t.Errorf("%x: %v, %v; want ErrMalformed from both", b, err1, err2)
		}
	}
	if _, err := (&CheckStateRequest{}).MarshalBinary(); err == nil {
		t.Error("empty request encoded")
	}
	if _, err := (&CheckStateResponse{States: []uint8{2}}).MarshalBinary(); err == nil {
		t.Error("state 2 encoded")
	}
}

func fuzzCodec(f *testing.F, dec func([]byte) ([]byte, error), seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		enc, err := dec(b)
		if err != nil {
			return
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc)
		}
		if _, err := dec(enc); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
	})
}

func FuzzParseCheckStateRequest(f *testing.F) {
	fuzzCodec(f, checkStateRequestRoundTrip, append([]byte{6, 1}, make([]byte, 40)...), []byte{6, 0})
}

func FuzzParseCheckStateResponse(f *testing.F) {
	fuzzCodec(f, checkStateResponseRoundTrip, []byte{7, 2, 1, 0}, []byte{7, 1, 2})
}
