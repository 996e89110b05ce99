package voucher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// MsgType is the first byte of every mint protocol message (VOUCHERS.md §3.2).
type MsgType uint8

// Mint protocol message types.
const (
	MsgQuoteRequest MsgType = 1
	MsgQuote        MsgType = 2
	MsgMintRequest  MsgType = 3
	MsgMintResponse MsgType = 4
	MsgError        MsgType = 5
)

// WriteMessage writes one length-prefixed message: len(4) | msg.
func WriteMessage(w io.Writer, msg []byte) error {
	if len(msg) == 0 || len(msg) > MaxMessageSize {
		return fmt.Errorf("%w: message of %d bytes", ErrMalformed, len(msg))
	}
	b := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(msg)), uint32(len(msg)))
	_, err := w.Write(append(b, msg...))
	return err
}

// ReadMessage reads one length-prefixed message of at most MaxMessageSize
// bytes. It never allocates more than the announced, capped length.
func ReadMessage(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read message length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxMessageSize {
		return nil, fmt.Errorf("%w: message length %d", ErrMalformed, n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("read message: %w", err)
	}
	return msg, nil
}

// QuoteRequest asks for a quote of Amount sats (VOUCHERS.md §3.3):
// type(1)=1 | amount(8).
type QuoteRequest struct {
	Amount uint64
}

// MarshalBinary encodes the request.
func (m *QuoteRequest) MarshalBinary() ([]byte, error) {
	if m.Amount == 0 {
		return nil, fmt.Errorf("%w: zero amount", ErrMalformed)
	}
	return appendU64([]byte{byte(MsgQuoteRequest)}, m.Amount), nil
}

// ParseQuoteRequest decodes a QuoteRequest.
func ParseQuoteRequest(b []byte) (QuoteRequest, error) {
	r := reader{b: b}
	if MsgType(r.u8()) != MsgQuoteRequest {
		return QuoteRequest{}, fmt.Errorf("%w: not a quote request", ErrMalformed)
	}
	m := QuoteRequest{Amount: r.u64()}
	if !r.finish() || m.Amount == 0 {
		return QuoteRequest{}, fmt.Errorf("%w: quote request", ErrMalformed)
	}
	return m, nil
}

// Quote is the node's offer (VOUCHERS.md §3.3):
// type(1)=2 | quote_id(16) | amount(8) | keyset(8) | price_msat_per_mb(8) |
// expires(8) | payee(33) | pay_hash(32) | payreq_len(2) | payreq.
type Quote struct {
	ID             [QuoteIDSize]byte
	Amount         uint64 // sats, the invoice amount and the vouchers' total
	Keyset         KeysetID
	PriceMsatPerMB uint64 // the node's service price the vouchers buy
	Expires        time.Time
	Payee          [PayeeSize]byte // the node's Lightning node key
	PayHash        [32]byte
	PayReq         string // BOLT 11
}

func validPayReq(s string) bool {
	if len(s) == 0 || len(s) > MaxPayReqLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// MarshalBinary encodes the quote.
func (m *Quote) MarshalBinary() ([]byte, error) {
	if m.Amount == 0 || !validPayReq(m.PayReq) || m.Expires.Unix() < 0 || m.Expires.Unix() >= maxUnix {
		return nil, fmt.Errorf("%w: quote fields", ErrMalformed)
	}
	b := []byte{byte(MsgQuote)}
	b = append(b, m.ID[:]...)
	b = appendU64(b, m.Amount)
	b = append(b, m.Keyset[:]...)
	b = appendU64(b, m.PriceMsatPerMB)
	b = appendU64(b, uint64(m.Expires.Unix()))
	b = append(b, m.Payee[:]...)
	b = append(b, m.PayHash[:]...)
	b = appendU16(b, uint16(len(m.PayReq)))
	return append(b, m.PayReq...), nil
}

// ParseQuote decodes a Quote.
func ParseQuote(b []byte) (Quote, error) {
	r := reader{b: b}
	var m Quote
	if MsgType(r.u8()) != MsgQuote {
		return m, fmt.Errorf("%w: not a quote", ErrMalformed)
	}
	copy(m.ID[:], r.take(QuoteIDSize))
	m.Amount = r.u64()
	copy(m.Keyset[:], r.take(KeysetIDSize))
	m.PriceMsatPerMB = r.u64()
	exp := r.u64()
	copy(m.Payee[:], r.take(PayeeSize))
	copy(m.PayHash[:], r.take(32))
	m.PayReq = string(r.take(int(r.u16())))
	if !r.finish() || m.Amount == 0 || exp >= maxUnix || !validPayReq(m.PayReq) {
		return Quote{}, fmt.Errorf("%w: quote", ErrMalformed)
	}
	m.Expires = time.Unix(int64(exp), 0).UTC()
	return m, nil
}

// BlindedMsg is one blinded message in a mint request.
type BlindedMsg struct {
	Amount uint64 // denomination, a power of two
	Msg    []byte // modulus length
}

// MintRequest presents a paid quote with the blinded messages to sign
// (VOUCHERS.md §3.4): type(1)=3 | quote_id(16) | keyset(8) | n(1) |
// (exp(1) | len(2) | blinded)*n, 1 ≤ n ≤ MaxVouchersPerMint.
type MintRequest struct {
	Quote   [QuoteIDSize]byte
	Keyset  KeysetID
	Blinded []BlindedMsg
}

// MarshalBinary encodes the request.
func (m *MintRequest) MarshalBinary() ([]byte, error) {
	if len(m.Blinded) == 0 || len(m.Blinded) > MaxVouchersPerMint {
		return nil, fmt.Errorf("%w: %d blinded messages", ErrMalformed, len(m.Blinded))
	}
	b := []byte{byte(MsgMintRequest)}
	b = append(b, m.Quote[:]...)
	b = append(b, m.Keyset[:]...)
	b = append(b, byte(len(m.Blinded)))
	return appendBlinded(b, m.Blinded)
}

// ParseMintRequest decodes a MintRequest.
func ParseMintRequest(b []byte) (MintRequest, error) {
	r := reader{b: b}
	var m MintRequest
	if MsgType(r.u8()) != MsgMintRequest {
		return m, fmt.Errorf("%w: not a mint request", ErrMalformed)
	}
	copy(m.Quote[:], r.take(QuoteIDSize))
	copy(m.Keyset[:], r.take(KeysetIDSize))
	n := int(r.u8())
	if r.bad || n == 0 || n > MaxVouchersPerMint {
		return MintRequest{}, fmt.Errorf("%w: mint request count", ErrMalformed)
	}
	var err error
	if m.Blinded, err = readBlinded(&r, n); err != nil {
		return MintRequest{}, err
	}
	if !r.finish() {
		return MintRequest{}, fmt.Errorf("%w: mint request", ErrMalformed)
	}
	return m, nil
}

// appendBlinded appends each blinded message as exp(1) | len(2) | msg
// (§3.4; the swap's outputs use the same form, §3.10).
func appendBlinded(b []byte, bms []BlindedMsg) ([]byte, error) {
	for _, bm := range bms {
		e, ok := denomExp(bm.Amount)
		if !ok || len(bm.Msg) < MinModulusBytes || len(bm.Msg) > MaxModulusBytes {
			return nil, fmt.Errorf("%w: blinded message", ErrMalformed)
		}
		b = append(b, e)
		b = appendU16(b, uint16(len(bm.Msg)))
		b = append(b, bm.Msg...)
	}
	return b, nil
}

// readBlinded reads n blinded messages in appendBlinded's form, checking
// each denomination exponent and modulus length.
func readBlinded(r *reader, n int) ([]BlindedMsg, error) {
	out := make([]BlindedMsg, 0, n)
	for range n {
		e := r.u8()
		l := int(r.u16())
		if r.bad || e > MaxDenomExp || l < MinModulusBytes || l > MaxModulusBytes {
			return nil, fmt.Errorf("%w: blinded message", ErrMalformed)
		}
		out = append(out, BlindedMsg{Amount: 1 << e, Msg: r.copyOut(l)})
	}
	return out, nil
}

// Total returns the sum of the blinded messages' amounts.
func (m *MintRequest) Total() uint64 {
	var t uint64
	for _, bm := range m.Blinded {
		t += bm.Amount // ≤ 64 · 2^20: no overflow
	}
	return t
}

// MintResponse carries the blind signatures, in request order
// (VOUCHERS.md §3.4): type(1)=4 | n(1) | (len(2) | blind_sig)*n.
type MintResponse struct {
	Sigs [][]byte
}

// MarshalBinary encodes the response.
func (m *MintResponse) MarshalBinary() ([]byte, error) {
	if len(m.Sigs) == 0 || len(m.Sigs) > MaxVouchersPerMint {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(m.Sigs))
	}
	b := []byte{byte(MsgMintResponse), byte(len(m.Sigs))}
	for _, s := range m.Sigs {
		if len(s) < MinModulusBytes || len(s) > MaxModulusBytes {
			return nil, fmt.Errorf("%w: signature length", ErrMalformed)
		}
		b = appendU16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b, nil
}

// ParseMintResponse decodes a MintResponse.
func ParseMintResponse(b []byte) (MintResponse, error) {
	r := reader{b: b}
	if MsgType(r.u8()) != MsgMintResponse {
		return MintResponse{}, fmt.Errorf("%w: not a mint response", ErrMalformed)
	}
	n := int(r.u8())
	if r.bad || n == 0 || n > MaxVouchersPerMint {
		return MintResponse{}, fmt.Errorf("%w: mint response count", ErrMalformed)
	}
	m := MintResponse{Sigs: make([][]byte, 0, n)}
	for range n {
		l := int(r.u16())
		if r.bad || l < MinModulusBytes || l > MaxModulusBytes {
			return MintResponse{}, fmt.Errorf("%w: signature length", ErrMalformed)
		}
		m.Sigs = append(m.Sigs, r.copyOut(l))
	}
	if !r.finish() {
		return MintResponse{}, fmt.Errorf("%w: mint response", ErrMalformed)
	}
	return m, nil
}

// ErrorCode is the status in an error response (VOUCHERS.md §3.5).
type ErrorCode uint8

// Error codes. Each maps to one sentinel error.
const (
	CodeMalformed     ErrorCode = 1
	CodeBadRequest    ErrorCode = 2
	CodeQuoteUnknown  ErrorCode = 3
	CodeNotPaid       ErrorCode = 4
	CodeQuoteIssued   ErrorCode = 5
	CodeUnknownKeyset ErrorCode = 6
	CodeExpired       ErrorCode = 7
	CodeAmount        ErrorCode = 8
	CodeBusy          ErrorCode = 9
	CodeUnavailable   ErrorCode = 10
	CodeDenomination  ErrorCode = 11
	CodeSwapConflict  ErrorCode = 12 // §3.10
	CodeBadSignature  ErrorCode = 13 // §3.10: a swap input
	CodeNotYetValid   ErrorCode = 14 // §3.10: a swap input
	maxErrorCode                = CodeNotYetValid
)

var codeErrs = [...]error{
	CodeMalformed:     ErrMalformed,
	CodeBadRequest:    ErrBadRequest,
	CodeQuoteUnknown:  ErrQuoteUnknown,
	CodeNotPaid:       ErrNotPaid,
	CodeQuoteIssued:   ErrQuoteIssued,
	CodeUnknownKeyset: ErrUnknownKeyset,
	CodeExpired:       ErrExpired,
	CodeAmount:        ErrAmount,
	CodeBusy:          ErrBusy,
	CodeUnavailable:   ErrUnavailable,
	CodeDenomination:  ErrDenomination,
	CodeSwapConflict:  ErrSwapConflict,
	CodeBadSignature:  ErrBadSignature,
	CodeNotYetValid:   ErrNotYetValid,
}

// Err returns the sentinel for the code.
func (c ErrorCode) Err() error {
	if c == 0 || c > maxErrorCode {
		return ErrMalformed
	}
	return codeErrs[c]
}

// CodeFor returns the code to send for err; anything unrecognised is
// CodeUnavailable (an internal fault is not the peer's business).
func CodeFor(err error) ErrorCode {
	for c := ErrorCode(1); c <= maxErrorCode; c++ {
		if errors.Is(err, codeErrs[c]) {
			return c
		}
	}
	return CodeUnavailable
}

// ErrorResponse is a refusal: type(1)=5 | code(1).
type ErrorResponse struct {
	Code ErrorCode
}

// MarshalBinary encodes the response.
func (m *ErrorResponse) MarshalBinary() ([]byte, error) {
	if m.Code == 0 || m.Code > maxErrorCode {
		return nil, fmt.Errorf("%w: error code %d", ErrMalformed, m.Code)
	}
	return []byte{byte(MsgError), byte(m.Code)}, nil
}

// ParseErrorResponse decodes an ErrorResponse.
func ParseErrorResponse(b []byte) (ErrorResponse, error) {
	if len(b) != 2 || MsgType(b[0]) != MsgError || b[1] == 0 || ErrorCode(b[1]) > maxErrorCode {
		return ErrorResponse{}, fmt.Errorf("%w: error response", ErrMalformed)
	}
	return ErrorResponse{Code: ErrorCode(b[1])}, nil
}
