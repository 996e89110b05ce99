package voucher

import "fmt"

// Swap messages (VOUCHERS.md §3.10, after Cashu NUT-03): a wallet whose
// TOPUP got no answer claims those vouchers back by exchanging them at the
// node's mint for fresh blinded ones of the same total. Once the swap is
// done, a stale redemption of the old vouchers is refused as spent.

// Swap message types.
const (
	MsgSwapRequest  MsgType = 8
	MsgSwapResponse MsgType = 9
)

// SwapIDSize is the length of a swap's request id.
const SwapIDSize = 32

// MaxSwapInputs and MaxSwapOutputs cap the vouchers given and the blinded
// messages asked for in one swap request. A request must also fit one
// framed message (MaxMessageSize), which at 2048-bit keys holds about 50
// inputs and 64 outputs.
const (
	MaxSwapInputs  = 64
	MaxSwapOutputs = MaxVouchersPerMint
)

// SwapRequest gives vouchers (inputs) for blind signatures on messages of
// the same total value (outputs) under one keyset (VOUCHERS.md §3.10):
//
//	type(1)=8 | request_id(32) | n_in(1) | voucher*n_in |
//	keyset(8) | n_out(1) | (exp(1) | len(2) | blinded)*n_out
//
// 1 ≤ n_in ≤ MaxSwapInputs, 1 ≤ n_out ≤ MaxSwapOutputs; each voucher is
// encoded as in §2, no two inputs are the same voucher (keyset and
// SpendID). That the amounts balance is the mint's check (ErrBadRequest),
// not the codec's.
type SwapRequest struct {
	ID      [SwapIDSize]byte // §3.10: chosen at random and stored by the wallet before sending
	Inputs  []Voucher        // §3.10, §2: as presented for redemption
	Keyset  KeysetID         // §3.10: the keyset the outputs are to be signed under
	Outputs []BlindedMsg     // §3.10: as in a mint request (§3.4)
}

// MarshalBinary encodes the request.
func (m *SwapRequest) MarshalBinary() ([]byte, error) {
	if len(m.Inputs) == 0 || len(m.Inputs) > MaxSwapInputs || len(m.Outputs) == 0 || len(m.Outputs) > MaxSwapOutputs {
		return nil, fmt.Errorf("%w: swap of %d inputs, %d outputs", ErrMalformed, len(m.Inputs), len(m.Outputs))
	}
	if dupInputs(m.Inputs) {
		return nil, fmt.Errorf("%w: duplicate swap input", ErrMalformed)
	}
	b := []byte{byte(MsgSwapRequest)}
	b = append(b, m.ID[:]...)
	b = append(b, byte(len(m.Inputs)))
	for i := range m.Inputs {
		var err error
		if b, err = m.Inputs[i].AppendBinary(b); err != nil {
			return nil, err
		}
	}
	b = append(b, m.Keyset[:]...)
	b = append(b, byte(len(m.Outputs)))
	return appendBlinded(b, m.Outputs)
}

// ParseSwapRequest decodes a SwapRequest.
func ParseSwapRequest(b []byte) (SwapRequest, error) {
	r := reader{b: b}
	var m SwapRequest
	if MsgType(r.u8()) != MsgSwapRequest {
		return m, fmt.Errorf("%w: not a swap request", ErrMalformed)
	}
	copy(m.ID[:], r.take(SwapIDSize))
	n := int(r.u8())
	if r.bad || n == 0 || n > MaxSwapInputs {
		return SwapRequest{}, fmt.Errorf("%w: swap input count", ErrMalformed)
	}
	m.Inputs = make([]Voucher, 0, n)
	for range n {
		v, err := readVoucher(&r)
		if err != nil {
			return SwapRequest{}, err
		}
		m.Inputs = append(m.Inputs, v)
	}
	if dupInputs(m.Inputs) {
		return SwapRequest{}, fmt.Errorf("%w: duplicate swap input", ErrMalformed)
	}
	copy(m.Keyset[:], r.take(KeysetIDSize))
	n = int(r.u8())
	if r.bad || n == 0 || n > MaxSwapOutputs {
		return SwapRequest{}, fmt.Errorf("%w: swap output count", ErrMalformed)
	}
	var err error
	if m.Outputs, err = readBlinded(&r, n); err != nil {
		return SwapRequest{}, err
	}
	if !r.finish() {
		return SwapRequest{}, fmt.Errorf("%w: swap request", ErrMalformed)
	}
	return m, nil
}

// dupInputs reports whether two inputs are the same voucher (same keyset
// and SpendID). n ≤ MaxSwapInputs, so quadratic is fine and allocates
// nothing a peer controls.
func dupInputs(vs []Voucher) bool {
	ids := make([][32]byte, len(vs))
	for i := range vs {
		ids[i] = vs[i].SpendID()
		for j := range i {
			if ids[j] == ids[i] && vs[j].Keyset == vs[i].Keyset {
				return true
			}
		}
	}
	return false
}

// InputTotal and OutputTotal return the sums of the inputs' and the
// outputs' amounts (each ≤ 64 · 2^20: no overflow).
func (m *SwapRequest) InputTotal() uint64 {
	var t uint64
	for i := range m.Inputs {
		t += m.Inputs[i].Amount
	}
	return t
}

// OutputTotal returns the sum of the outputs' amounts.
func (m *SwapRequest) OutputTotal() uint64 {
	var t uint64
	for _, bm := range m.Outputs {
		t += bm.Amount
	}
	return t
}

// Swap response statuses.
const (
	// SwapSigned: the inputs are spent and the outputs signed.
	SwapSigned uint8 = 0
	// SwapSpent: some inputs were spent already; nothing was spent or
	// signed by this request.
	SwapSpent uint8 = 1
)

// SwapResponse answers a SwapRequest (VOUCHERS.md §3.10):
//
//	type(1)=9 | status(1)=0 | n(1) | (len(2) | blind_sig)*n   n = n_out, request order
//	type(1)=9 | status(1)=1 | n(1) | state(1)*n               n = n_in, request order
//
// Exactly one of Sigs and States is set. States are StateUnspent or
// StateSpent, at least one StateSpent.
type SwapResponse struct {
	Sigs   [][]byte // §3.10 status 0: blind signatures of the outputs
	States []uint8  // §3.10 status 1: each input's state in the spent set
}

// MarshalBinary encodes the response.
func (m *SwapResponse) MarshalBinary() ([]byte, error) {
	switch {
	case len(m.Sigs) > 0 && len(m.States) == 0:
		if len(m.Sigs) > MaxSwapOutputs {
			return nil, fmt.Errorf("%w: %d swap signatures", ErrMalformed, len(m.Sigs))
		}
		b := []byte{byte(MsgSwapResponse), SwapSigned, byte(len(m.Sigs))}
		for _, s := range m.Sigs {
			if len(s) < MinModulusBytes || len(s) > MaxModulusBytes {
				return nil, fmt.Errorf("%w: signature length", ErrMalformed)
			}
			b = appendU16(b, uint16(len(s)))
			b = append(b, s...)
		}
		return b, nil
	case len(m.States) > 0 && len(m.Sigs) == 0:
		if len(m.States) > MaxSwapInputs || !validSpentStates(m.States) {
			return nil, fmt.Errorf("%w: swap states", ErrMalformed)
		}
		b := []byte{byte(MsgSwapResponse), SwapSpent, byte(len(m.States))}
		return append(b, m.States...), nil
	}
	return nil, fmt.Errorf("%w: swap response needs signatures or states", ErrMalformed)
}

// validSpentStates: every state is 0 or 1 and at least one is spent.
func validSpentStates(states []uint8) bool {
	spent := false
	for _, s := range states {
		if s > StateSpent {
			return false
		}
		spent = spent || s == StateSpent
	}
	return spent
}

// ParseSwapResponse decodes a SwapResponse.
func ParseSwapResponse(b []byte) (SwapResponse, error) {
	r := reader{b: b}
	if MsgType(r.u8()) != MsgSwapResponse {
		return SwapResponse{}, fmt.Errorf("%w: not a swap response", ErrMalformed)
	}
	status := r.u8()
	n := int(r.u8())
	var m SwapResponse
	switch {
	case r.bad || n == 0:
		return SwapResponse{}, fmt.Errorf("%w: swap response count", ErrMalformed)
	case status == SwapSigned && n <= MaxSwapOutputs:
		m.Sigs = make([][]byte, 0, n)
		for range n {
			l := int(r.u16())
			if r.bad || l < MinModulusBytes || l > MaxModulusBytes {
				return SwapResponse{}, fmt.Errorf("%w: signature length", ErrMalformed)
			}
			m.Sigs = append(m.Sigs, r.copyOut(l))
		}
	case status == SwapSpent && n <= MaxSwapInputs:
		m.States = r.copyOut(n)
		if !r.bad && !validSpentStates(m.States) {
			return SwapResponse{}, fmt.Errorf("%w: swap states", ErrMalformed)
		}
	default:
		return SwapResponse{}, fmt.Errorf("%w: swap response status %d, count %d", ErrMalformed, status, n)
	}
	if !r.finish() {
		return SwapResponse{}, fmt.Errorf("%w: swap response", ErrMalformed)
	}
	return m, nil
}
