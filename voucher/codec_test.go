package voucher

import (
	"bytes"
	"crypto/rsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"math/big"
	"os"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/codec_vectors.json")

const vectorsPath = "testdata/codec_vectors.json"

// codecVector is one golden encoding: valid ones decode and re-encode to
// the same bytes; invalid ones must fail with ErrMalformed (or
// ErrDenomination where noted by the decoder).
type codecVector struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Hex   string `json:"hex"`
	Valid bool   `json:"valid"`
}

// decoders maps a vector kind to "decode, then re-encode".
var decoders = map[string]func([]byte) ([]byte, error){
	"voucher": func(b []byte) ([]byte, error) {
		v, err := ParseVoucher(b)
		if err != nil {
			return nil, err
		}
		return v.MarshalBinary()
	},
	"batch": func(b []byte) ([]byte, error) {
		vs, err := DecodeBatch(b)
		if err != nil {
			return nil, err
		}
		return EncodeBatch(vs)
	},
	"keyset": func(b []byte) ([]byte, error) {
		k, err := ParseKeyset(b)
		if err != nil {
			return nil, err
		}
		return k.MarshalBinary()
	},
	"quote_request": func(b []byte) ([]byte, error) {
		m, err := ParseQuoteRequest(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
	"quote": func(b []byte) ([]byte, error) {
		m, err := ParseQuote(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
	"mint_request": func(b []byte) ([]byte, error) {
		m, err := ParseMintRequest(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
	"mint_response": func(b []byte) ([]byte, error) {
		m, err := ParseMintResponse(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
	"swap_request": func(b []byte) ([]byte, error) {
		m, err := ParseSwapRequest(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
	"swap_response": func(b []byte) ([]byte, error) {
		m, err := ParseSwapResponse(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
	"error": func(b []byte) ([]byte, error) {
		m, err := ParseErrorResponse(b)
		if err != nil {
			return nil, err
		}
		return m.MarshalBinary()
	},
}

// rfcModulus is the RFC 9474 test key's 4096-bit modulus: a fixed,
// public modulus for golden keysets.
func rfcModulus(t *testing.T) *big.Int {
	t.Helper()
	return hexInt(t, loadRFCVectors(t)[0].N)
}

func buildVectors(t *testing.T) []codecVector {
	t.Helper()
	n := rfcModulus(t)
	ks, err := NewKeyset(time.Unix(1767225600, 0), time.Unix(1769904000, 0), time.Unix(1770508800, 0),
		[]DenomKey{{Amount: 1, Key: &rsa.PublicKey{N: n, E: 65537}}, {Amount: 1024, Key: &rsa.PublicKey{N: n, E: 65537}}})
	if err != nil {
		t.Fatal(err)
	}
	ksEnc, _ := ks.MarshalBinary()
	sig := bytes.Repeat([]byte{0x5a}, 256)
	v := Voucher{Keyset: ks.ID(), Amount: 8, Sig: sig}
	copy(v.Secret[:], bytes.Repeat([]byte{0xc3}, 32))
	vEnc, _ := v.MarshalBinary()
	v2 := v
	v2.Amount, v2.Sig = 1024, bytes.Repeat([]byte{0x77}, 512)
	batch, _ := EncodeBatch([]Voucher{v, v2})
	qr, _ := (&QuoteRequest{Amount: 1500}).MarshalBinary()
	q := Quote{Amount: 1500, Keyset: ks.ID(), PriceMsatPerMB: 2000, Expires: time.Unix(1767226200, 0),
		PayReq: "lnbcrt15u1pexample0payreq"}
	q.ID[0], q.Payee[0], q.PayHash[31] = 0xab, 0x02, 0x01
	qEnc, _ := q.MarshalBinary()
	mr := MintRequest{Keyset: ks.ID(), Blinded: []BlindedMsg{
		{Amount: 1024, Msg: bytes.Repeat([]byte{1}, 256)}, {Amount: 4, Msg: bytes.Repeat([]byte{2}, 256)}}}
	mr.Quote[15] = 7
	mrEnc, _ := mr.MarshalBinary()
	ms, _ := (&MintResponse{Sigs: [][]byte{bytes.Repeat([]byte{3}, 256), bytes.Repeat([]byte{4}, 256)}}).MarshalBinary()
	er, _ := (&ErrorResponse{Code: CodeNotPaid}).MarshalBinary()
	sr := SwapRequest{Inputs: []Voucher{v, v2}, Keyset: ks.ID(), Outputs: []BlindedMsg{
		{Amount: 1024, Msg: bytes.Repeat([]byte{5}, 256)}, {Amount: 8, Msg: bytes.Repeat([]byte{6}, 256)}}}
	sr.ID[0], sr.ID[31] = 0x5e, 0x1d
	srEnc, err := sr.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	inEnd := 1 + SwapIDSize + 1 + len(vEnc) + len(vEnc) + 256 // after the two inputs
	ssig, _ := (&SwapResponse{Sigs: [][]byte{bytes.Repeat([]byte{7}, 256), bytes.Repeat([]byte{8}, 256)}}).MarshalBinary()
	sspent, _ := (&SwapResponse{States: []uint8{StateUnspent, StateSpent}}).MarshalBinary()

	mut := func(b []byte, f func([]byte) []byte) string {
		return hex.EncodeToString(f(append([]byte(nil), b...)))
	}
	set := func(i int, x byte) func([]byte) []byte { return func(b []byte) []byte { b[i] = x; return b } }
	trail := func(b []byte) []byte { return append(b, 0) }
	cut := func(b []byte) []byte { return b[:len(b)-1] }
	h := hex.EncodeToString
	return []codecVector{
		{"voucher", "voucher", h(vEnc), true},
		{"voucher truncated", "voucher", mut(vEnc, cut), false},
		{"voucher trailing byte", "voucher", mut(vEnc, trail), false},
		{"voucher bad version", "voucher", mut(vEnc, set(0, 2)), false},
		{"voucher exponent 21", "voucher", mut(vEnc, set(9, 21)), false},
		{"voucher sig_len 255", "voucher", mut(vEnc, func(b []byte) []byte { b[42], b[43] = 0, 255; return b[:len(b)-1] }), false},
		{"batch of two", "batch", h(batch), true},
		{"batch count 0", "batch", mut(batch, set(0, 0)), false},
		{"batch count 3 with two", "batch", mut(batch, set(0, 3)), false},
		{"batch count 13", "batch", mut(batch, set(0, 13)), false},
		{"keyset", "keyset", h(ksEnc), true},
		{"keyset trailing byte", "keyset", mut(ksEnc, trail), false},
		{"keyset not_after before not_before", "keyset", mut(ksEnc, func(b []byte) []byte { clear(b[9:17]); return b }), false},
		{"keyset exponents not ascending", "keyset", mut(ksEnc, set(26+7+512, 0)), false},
		{"keyset public exponent not 65537", "keyset", mut(ksEnc, set(29, 3)), false},
		{"keyset even modulus", "keyset", mut(ksEnc, set(26+7+511, 0x10)), false},
		{"keyset zero keys", "keyset", mut(ksEnc, func(b []byte) []byte { b[25] = 0; return b[:26] }), false},
		{"quote request", "quote_request", h(qr), true},
		{"quote request zero", "quote_request", "010000000000000000", false},
		{"quote request trailing", "quote_request", mut(qr, trail), false},
		{"quote", "quote", h(qEnc), true},
		{"quote payreq with space", "quote", mut(qEnc, set(len(qEnc)-3, ' ')), false},
		{"quote payreq length past end", "quote", mut(qEnc, cut), false},
		{"quote wrong type", "quote", mut(qEnc, set(0, 1)), false},
		{"mint request", "mint_request", h(mrEnc), true},
		{"mint request count 0", "mint_request", mut(mrEnc, set(25, 0)), false},
		{"mint request count 65", "mint_request", mut(mrEnc, set(25, 65)), false},
		{"mint request short blinded", "mint_request", mut(mrEnc, cut), false},
		{"mint response", "mint_response", h(ms), true},
		{"mint response trailing", "mint_response", mut(ms, trail), false},
		{"mint response sig too long", "mint_response", mut(ms, set(2, 0x02)), false},
		{"swap request", "swap_request", h(srEnc), true},
		{"swap request trailing", "swap_request", mut(srEnc, trail), false},
		{"swap request inputs 0", "swap_request", mut(srEnc, set(33, 0)), false},
		{"swap request inputs 65", "swap_request", mut(srEnc, set(33, 65)), false},
		{"swap request outputs 0", "swap_request", mut(srEnc, set(inEnd+8, 0)), false},
		{"swap request outputs 65", "swap_request", mut(srEnc, set(inEnd+8, 65)), false},
		{"swap request duplicate input", "swap_request", mut(srEnc, func(b []byte) []byte {
			// the second input made a copy of the first (both 2^3 sats, 256-byte signatures)
			v3 := v
			v3.Sig = bytes.Repeat([]byte{0x77}, 256)
			enc, _ := v3.MarshalBinary()
			out := append([]byte(nil), b[:34+len(vEnc)]...)
			out = append(out, enc...)
			return append(out, b[inEnd:]...)
		}), false},
		{"swap request short blinded", "swap_request", mut(srEnc, cut), false},
		{"swap response signed", "swap_response", h(ssig), true},
		{"swap response spent", "swap_response", h(sspent), true},
		{"swap response none spent", "swap_response", "090102" + "0000", false},
		{"swap response state 2", "swap_response", "090102" + "0102", false},
		{"swap response status 2", "swap_response", "090201" + "01", false},
		{"swap response count 0", "swap_response", "090000", false},
		{"swap response trailing", "swap_response", mut(ssig, trail), false},
		{"error not paid", "error", h(er), true},
		{"error code 0", "error", "0500", false},
		{"error code 200", "error", "05c8", false},
	}
}

func loadVectors(tb testing.TB) []codecVector {
	tb.Helper()
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		tb.Fatal(err)
	}
	var vs []codecVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		tb.Fatal(err)
	}
	return vs
}

func TestCodecVectors(t *testing.T) {
	built := buildVectors(t)
	if *update {
		raw, _ := json.MarshalIndent(built, "", "  ")
		if err := os.WriteFile(vectorsPath, append(raw, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stored := loadVectors(t)
	if len(stored) != len(built) {
		t.Fatalf("%d stored vectors, %d built: run with -update", len(stored), len(built))
	}
	for i, vec := range stored {
		t.Run(vec.Name, func(t *testing.T) {
			if built[i] != vec {
				t.Fatalf("encoder output changed: run with -update if intended")
			}
			b, err := hex.DecodeString(vec.Hex)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decoders[vec.Kind](b)
			if !vec.Valid {
				if err == nil {
					t.Fatal("must-fail vector decoded")
				}
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDenomination) {
					t.Fatalf("error %v is not ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, b) {
				t.Fatal("re-encoding differs")
			}
		})
	}
}

func TestMessageFraming(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	if err := WriteMessage(&buf, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadMessage(&buf)
	if err != nil || !bytes.Equal(got, []byte{1, 2, 3}) {
		t.Fatalf("%x, %v", got, err)
	}
	for _, bad := range [][]byte{
		{0, 0, 0, 0},             // zero length
		{0xff, 0xff, 0xff, 0xff}, // over the cap
		{0, 0, 0, 5, 1, 2},       // short body
		{0, 0},                   // short header
	} {
		if _, err := ReadMessage(bytes.NewReader(bad)); err == nil {
			t.Fatalf("ReadMessage(%x) succeeded", bad)
		}
	}
	if err := WriteMessage(&buf, make([]byte, MaxMessageSize+1)); err == nil {
		t.Fatal("oversized message written")
	}
}
