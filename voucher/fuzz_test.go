package voucher

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// seedFuzz adds every golden vector of kind (valid and must-fail).
func seedFuzz(f *testing.F, kind string) {
	for _, v := range loadVectors(f) {
		if v.Kind == kind {
			b, err := hex.DecodeString(v.Hex)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{})
}

// fuzzRoundTrip: decode arbitrary bytes; whatever decodes must re-encode
// to exactly the input (every encoding is canonical) and decode again.
func fuzzRoundTrip(f *testing.F, kind string) {
	seedFuzz(f, kind)
	dec := decoders[kind]
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

func FuzzParseVoucher(f *testing.F)       { fuzzRoundTrip(f, "voucher") }
func FuzzDecodeBatch(f *testing.F)        { fuzzRoundTrip(f, "batch") }
func FuzzParseKeyset(f *testing.F)        { fuzzRoundTrip(f, "keyset") }
func FuzzParseQuoteRequest(f *testing.F)  { fuzzRoundTrip(f, "quote_request") }
func FuzzParseQuote(f *testing.F)         { fuzzRoundTrip(f, "quote") }
func FuzzParseMintRequest(f *testing.F)   { fuzzRoundTrip(f, "mint_request") }
func FuzzParseMintResponse(f *testing.F)  { fuzzRoundTrip(f, "mint_response") }
func FuzzParseErrorResponse(f *testing.F) { fuzzRoundTrip(f, "error") }

// FuzzReadMessage: the framing reader never panics, never returns more
// than the cap, and returns exactly the announced body.
func FuzzReadMessage(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 5})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		msg, err := ReadMessage(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(msg) == 0 || len(msg) > MaxMessageSize || !bytes.Equal(msg, b[4:4+len(msg)]) {
			t.Fatalf("ReadMessage(%x) = %x", b, msg)
		}
	})
}

// FuzzParseSigningKeyset: the store's private-keyset decoder never panics.
func FuzzParseSigningKeyset(f *testing.F) {
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		sk, err := ParseSigningKeyset(b)
		if err != nil {
			return
		}
		if _, err := sk.MarshalBinary(); err != nil {
			t.Fatal(err)
		}
	})
}
