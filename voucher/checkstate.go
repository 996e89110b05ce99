package voucher

import "fmt"

// Check-state messages (VOUCHERS.md §3.9, after Cashu NUT-07): a wallet
// whose TOPUP got no answer (a timeout, a crash) asks the node's mint which
// of those vouchers are spent before it offers any of them again.

// Check-state message types.
const (
	MsgCheckState         MsgType = 6
	MsgCheckStateResponse MsgType = 7
)

// MaxCheckState caps the vouchers asked about in one check-state request.
const MaxCheckState = 64

// SpendRef names one voucher in the mint's spent set: its keyset and
// SpendID. It says nothing the vouchers' redemption did not.
type SpendRef struct {
	Keyset KeysetID
	ID     [32]byte
}

// CheckStateRequest asks which vouchers are spent (§3.9):
// type(1)=6 | count(1), 1..MaxCheckState | count × (keyset(8) | spend_id(32)).
type CheckStateRequest struct {
	Refs []SpendRef
}

// MarshalBinary encodes the request.
func (m *CheckStateRequest) MarshalBinary() ([]byte, error) {
	if len(m.Refs) == 0 || len(m.Refs) > MaxCheckState {
		return nil, fmt.Errorf("%w: check-state of %d vouchers", ErrMalformed, len(m.Refs))
	}
	b := make([]byte, 0, 2+len(m.Refs)*(KeysetIDSize+32))
	b = append(b, byte(MsgCheckState), byte(len(m.Refs)))
	for _, r := range m.Refs {
		b = append(b, r.Keyset[:]...)
		b = append(b, r.ID[:]...)
	}
	return b, nil
}

// ParseCheckStateRequest decodes a CheckStateRequest.
func ParseCheckStateRequest(b []byte) (CheckStateRequest, error) {
	r := reader{b: b}
	if MsgType(r.u8()) != MsgCheckState {
		return CheckStateRequest{}, fmt.Errorf("%w: not a check-state request", ErrMalformed)
	}
	n := int(r.u8())
	if n == 0 || n > MaxCheckState {
		return CheckStateRequest{}, fmt.Errorf("%w: check-state of %d vouchers", ErrMalformed, n)
	}
	m := CheckStateRequest{Refs: make([]SpendRef, n)}
	for i := range m.Refs {
		copy(m.Refs[i].Keyset[:], r.take(KeysetIDSize))
		copy(m.Refs[i].ID[:], r.take(32))
	}
	if !r.finish() {
		return CheckStateRequest{}, fmt.Errorf("%w: check-state request", ErrMalformed)
	}
	return m, nil
}

// Voucher states in a check-state response.
const (
	StateUnspent uint8 = 0 // not in the spent set: safe to offer again
	StateSpent   uint8 = 1 // redeemed: never offer it again
)

// CheckStateResponse answers a CheckStateRequest, one state per voucher in
// the request's order (§3.9): type(1)=7 | count(1) | count × state(1).
type CheckStateResponse struct {
	States []uint8
}

// MarshalBinary encodes the response.
func (m *CheckStateResponse) MarshalBinary() ([]byte, error) {
	if len(m.States) == 0 || len(m.States) > MaxCheckState {
		return nil, fmt.Errorf("%w: check-state response of %d states", ErrMalformed, len(m.States))
	}
	b := append(make([]byte, 0, 2+len(m.States)), byte(MsgCheckStateResponse), byte(len(m.States)))
	for _, s := range m.States {
		if s > StateSpent {
			return nil, fmt.Errorf("%w: voucher state %d", ErrMalformed, s)
		}
		b = append(b, s)
	}
	return b, nil
}

// ParseCheckStateResponse decodes a CheckStateResponse.
func ParseCheckStateResponse(b []byte) (CheckStateResponse, error) {
	r := reader{b: b}
	if MsgType(r.u8()) != MsgCheckStateResponse {
		return CheckStateResponse{}, fmt.Errorf("%w: not a check-state response", ErrMalformed)
	}
	n := int(r.u8())
	if n == 0 || n > MaxCheckState {
		return CheckStateResponse{}, fmt.Errorf("%w: check-state response of %d states", ErrMalformed, n)
	}
	m := CheckStateResponse{States: r.copyOut(n)}
	if !r.finish() {
		return CheckStateResponse{}, fmt.Errorf("%w: check-state response", ErrMalformed)
	}
	for _, s := range m.States {
		if s > StateSpent {
			return CheckStateResponse{}, fmt.Errorf("%w: voucher state %d", ErrMalformed, s)
		}
	}
	return m, nil
}
