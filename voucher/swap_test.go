package voucher

import (
	"bytes"
	"errors"
	"testing"
)

func testVoucher(amount uint64, secret byte) Voucher {
	v := Voucher{Keyset: KeysetID{1, 2, 3, 4, 5, 6, 7, 8}, Amount: amount, Sig: bytes.Repeat([]byte{secret ^ 0x5a}, 256)}
	v.Secret[0] = secret
	return v
}

// TestSwapCodec: swap messages decode to the same values and re-encode
// to the same bytes; the encoders refuse what the parsers refuse.
func TestSwapCodec(t *testing.T) {
	t.Parallel()
	req := SwapRequest{
		Inputs:  []Voucher{testVoucher(4, 1), testVoucher(1, 2)},
		Keyset:  KeysetID{9},
		Outputs: []BlindedMsg{{Amount: 2, Msg: bytes.Repeat([]byte{3}, 256)}, {Amount: 2, Msg: bytes.Repeat([]byte{4}, 512)}, {Amount: 1, Msg: bytes.Repeat([]byte{5}, 256)}},
	}
	req.ID[7] = 0x42
	b, err := req.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != byte(MsgSwapRequest) || b[33] != 2 {
		t.Fatalf("encoding %x…", b[:40])
	}
	got, err := ParseSwapRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := got.MarshalBinary()
	if !bytes.Equal(again, b) || got.ID != req.ID || got.Keyset != req.Keyset || got.InputTotal() != 5 || got.OutputTotal() != 5 {
		t.Fatalf("round trip: %+v", got)
	}
	// Decoded messages do not alias the input.
	b[len(b)-1] ^= 1
	if got.Outputs[2].Msg[255] != 5 {
		t.Fatal("decoded output aliases the buffer")
	}

	dup := req
	dup.Inputs = []Voucher{testVoucher(4, 1), testVoucher(4, 1)}
	dup.Inputs[1].Sig = bytes.Repeat([]byte{0xee}, 256) // another signature, same voucher
	if _, err := dup.MarshalBinary(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("duplicate inputs encoded: %v", err)
	}
	other := dup
	other.Inputs = []Voucher{testVoucher(4, 1), testVoucher(4, 1)}
	other.Inputs[1].Keyset = KeysetID{7} // same secret under another keyset: another voucher
	if _, err := other.MarshalBinary(); err != nil {
		t.Fatalf("same secret, other keyset: %v", err)
	}
	for name, m := range map[string]SwapRequest{
		"no inputs":  {Keyset: req.Keyset, Outputs: req.Outputs},
		"no outputs": {Inputs: req.Inputs, Keyset: req.Keyset},
		"65 inputs": {Inputs: func() []Voucher {
			var vs []Voucher
			for i := range 65 {
				vs = append(vs, testVoucher(1, byte(i)))
			}
			return vs
		}(), Keyset: req.Keyset, Outputs: req.Outputs},
		"65 outputs": {Inputs: req.Inputs, Keyset: req.Keyset, Outputs: make([]BlindedMsg, 65)},
		"odd amount": {Inputs: req.Inputs, Keyset: req.Keyset, Outputs: []BlindedMsg{{Amount: 3, Msg: make([]byte, 256)}}},
	} {
		if _, err := m.MarshalBinary(); !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDenomination) {
			t.Errorf("%s: encoded (%v)", name, err)
		}
	}

	for _, resp := range []SwapResponse{
		{Sigs: [][]byte{bytes.Repeat([]byte{1}, 256)}},
		{States: []uint8{StateSpent, StateUnspent, StateSpent}},
	} {
		rb, err := resp.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseSwapResponse(rb)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := got.MarshalBinary()
		if !bytes.Equal(again, rb) {
			t.Fatalf("response round trip %x → %x", rb, again)
		}
	}
	for name, resp := range map[string]SwapResponse{
		"empty":      {},
		"both":       {Sigs: [][]byte{make([]byte, 256)}, States: []uint8{1}},
		"none spent": {States: []uint8{0, 0}},
		"state 2":    {States: []uint8{2}},
		"short sig":  {Sigs: [][]byte{make([]byte, 255)}},
	} {
		if _, err := resp.MarshalBinary(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: encoded (%v)", name, err)
		}
	}
}

func FuzzParseSwapRequest(f *testing.F)  { fuzzRoundTrip(f, "swap_request") }
func FuzzParseSwapResponse(f *testing.F) { fuzzRoundTrip(f, "swap_response") }
