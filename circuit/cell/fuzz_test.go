package cell

import (
	"bytes"
	"errors"
	"testing"
)

// seed adds every testdata vector of type typ to the corpus.
func seed(f *testing.F, typ string) {
	f.Helper()
	vs, bufs := loadVectors(f)
	n := 0
	for i, v := range vs {
		if v.Type == typ {
			f.Add(bufs[i])
			n++
		}
	}
	if n == 0 {
		f.Fatalf("no %s vectors in testdata", typ)
	}
}

// roundTrip is the property every parser must have: it fails only with
// errors matching ErrMalformed, and what it accepts re-encodes to exactly the
// input (every encoding is canonical) and decodes again to the same value.
func roundTrip(t *testing.T, typ string, in []byte) {
	orig := bytes.Clone(in)
	desc, again, err := decodeAs(typ, in)
	if !bytes.Equal(in, orig) {
		t.Fatal("parser modified its input")
	}
	if err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not match ErrMalformed", err)
		}
		return
	}
	if !bytes.Equal(again, in) {
		t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, in)
	}
	desc2, _, err := decodeAs(typ, again)
	if err != nil {
		t.Fatalf("re-encoding does not decode: %v", err)
	}
	if desc2 != desc {
		t.Fatalf("decoded differently the second time:\n%s\n%s", desc, desc2)
	}
}

// fuzzBody checks a cell-body parser. Inputs are laid at the front of a
// zeroed BodyLen body so the fuzzer need not produce 4091 bytes; inputs of
// any other length are also fed raw and must fail with ErrBadLength.
func fuzzBody(f *testing.F, typ string) {
	seed(f, typ)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) != BodyLen {
			if _, _, err := decodeAs(typ, data); !errors.Is(err, ErrBadLength) {
				t.Fatalf("%d-byte body: err %v, want ErrBadLength", len(data), err)
			}
		}
		body := make([]byte, BodyLen)
		copy(body, data)
		roundTrip(t, typ, body)
	})
}

func FuzzCreate(f *testing.F)  { fuzzBody(f, "create") }
func FuzzCreated(f *testing.F) { fuzzBody(f, "created") }
func FuzzDestroy(f *testing.F) { fuzzBody(f, "destroy") }

// FuzzRelay checks DecodeRelay/EncodeRelay on regions of any length.
func FuzzRelay(f *testing.F) {
	seed(f, "relay")
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, "relay", data)
	})
}

// fuzzMessage checks a relay-message body parser; accepted bodies must also
// fit a relay message.
func fuzzMessage(f *testing.F, typ string) {
	seed(f, typ)
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrip(t, typ, data)
		if _, _, err := decodeAs(typ, data); err == nil && len(data) > MaxRelayData {
			t.Fatalf("accepted a %d-byte body, more than MaxRelayData", len(data))
		}
	})
}

func FuzzBegin(f *testing.F)     { fuzzMessage(f, "begin") }
func FuzzConnected(f *testing.F) { fuzzMessage(f, "connected") }
func FuzzEnd(f *testing.F)       { fuzzMessage(f, "end") }
func FuzzExtend(f *testing.F)    { fuzzMessage(f, "extend") }
func FuzzExtended(f *testing.F)  { fuzzMessage(f, "extended") }
func FuzzResolve(f *testing.F)   { fuzzMessage(f, "resolve") }
func FuzzResolved(f *testing.F)  { fuzzMessage(f, "resolved") }
func FuzzTopUp(f *testing.F)     { fuzzMessage(f, "topup") }
func FuzzTopUpAck(f *testing.F)  { fuzzMessage(f, "topup_ack") }
func FuzzTeardown(f *testing.F)  { fuzzMessage(f, "teardown") }
func FuzzOffer(f *testing.F)     { fuzzMessage(f, "offer") }
func FuzzAnswer(f *testing.F)    { fuzzMessage(f, "answer") }

// FuzzCell checks whole cells: the header accessors and, by command, the
// CREATE, CREATED and DESTROY bodies. Inputs are laid at the front of a zero
// cell.
func FuzzCell(f *testing.F) {
	seed(f, "cell")
	f.Fuzz(func(t *testing.T, data []byte) {
		c := new(Cell)
		copy(c[:], data)
		roundTrip(t, "cell", c[:])
	})
}
