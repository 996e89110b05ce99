package mempool

import (
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// Kind is a frame's type (PROTOCOL.md §6.1).
type Kind uint8

// Frame kinds: requests from the client, answers from the delivery node.
const (
	KindSubmit  Kind = 0x01 // client: a transaction to hand to the backend
	KindQuery   Kind = 0x02 // client: is this txid in your mempool or chain?
	KindVerdict Kind = 0x81 // delivery node: answer to SUBMIT
	KindStatus  Kind = 0x82 // delivery node: answer to QUERY
)

// frameHeaderLen is kind(1) | body_len(3, big-endian).
const frameHeaderLen = 4

// frameReadChunk is how much ReadFrame allocates ahead of the bytes that
// have arrived.
const frameReadChunk = 32 << 10

// Submit asks the delivery node to hand Tx to its backend (§6.2):
//
//	flags(1) | [max_fee_rate(8) if flags&1] | tx
type Submit struct {
	// Tx is the serialized transaction, 1..MaxTxBytes bytes. The delivery
	// node passes it on unparsed; the backend decides.
	Tx []byte
	// MaxFeeRate, if HasMaxFeeRate, is the highest fee rate the client
	// accepts in sat/kvB (bitcoind's maxfeerate; 0 = no limit), at most
	// MaxFeeRateSatPerKvB. Without it the backend's default applies.
	MaxFeeRate    uint64
	HasMaxFeeRate bool
}

const flagMaxFeeRate = 0x01

// Query asks whether TxID is in the delivery node's mempool or chain
// (§6.3): txid(32), internal byte order as in the transaction's hash.
type Query struct {
	TxID [32]byte
}

// VerdictStatus says what a delivery node's backend did with a SUBMIT.
type VerdictStatus uint8

// Verdict statuses (§6.2).
const (
	// Accepted: the transaction is in the backend's mempool (now or
	// already); code 0 and no message.
	Accepted VerdictStatus = 0
	// Rejected: the backend refused it; code is bitcoind's (negative).
	Rejected VerdictStatus = 1
	// Unavailable: the delivery node could not ask its backend (down,
	// busy, timed out); the client tries elsewhere. Code is 0.
	Unavailable VerdictStatus = 2
)

// Verdict answers a Submit (§6.2):
//
//	status(1) | code(4, signed) | msg_len(1) | msg
type Verdict struct {
	Status VerdictStatus
	// Code is bitcoind's RPC error code when Rejected (-32768..-1), 0
	// otherwise.
	Code int32
	// Message is the backend's reason, printable ASCII, at most
	// MaxMessageLen bytes; empty when Accepted.
	Message string
}

// TxState answers a Query (§6.3): state(1).
type TxState uint8

// Transaction states.
const (
	StateUnknown     TxState = 0 // neither in the mempool nor (as far as the backend can tell) in the chain
	StateMempool     TxState = 1
	StateChain       TxState = 2 // confirmed
	StateUnavailable TxState = 3 // the backend could not be asked
)

func (k Kind) String() string {
	switch k {
	case KindSubmit:
		return "SUBMIT"
	case KindQuery:
		return "QUERY"
	case KindVerdict:
		return "VERDICT"
	case KindStatus:
		return "STATUS"
	}
	return fmt.Sprintf("Kind(%#x)", uint8(k))
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// maxBody is the largest body a frame of kind k may carry, 0 for an
// unknown kind.
func maxBody(k Kind) int {
	switch k {
	case KindSubmit:
		return MaxFrameBody
	case KindQuery:
		return 32
	case KindVerdict:
		return 1 + 4 + 1 + MaxMessageLen
	case KindStatus:
		return 1
	}
	return 0
}

// WriteFrame writes one frame of kind k.
func WriteFrame(w io.Writer, k Kind, body []byte) error {
	if len(body) > maxBody(k) {
		return fmt.Errorf("mempool: %v body of %d bytes is over its bound", k, len(body))
	}
	buf := make([]byte, frameHeaderLen+len(body))
	buf[0] = byte(k)
	buf[1], buf[2], buf[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	copy(buf[frameHeaderLen:], body)
	_, err := w.Write(buf)
	return err
}

// ReadFrame reads one frame, refusing an unknown kind or a body over the
// kind's bound before reading it. io.EOF means the peer closed before a
// frame began; a frame cut short is io.ErrUnexpectedEOF.
func ReadFrame(r io.Reader) (Kind, []byte, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	k := Kind(h[0])
	n := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
	max := maxBody(k)
	if max == 0 {
		return 0, nil, malformed("unknown frame kind %#x", h[0])
	}
	if n > max {
		return 0, nil, malformed("%v body of %d bytes, over %d", k, n, max)
	}
	// Grow the body as it arrives, not to the length the peer announced:
	// a bare header must not pin MaxFrameBody bytes.
	body := make([]byte, 0, min(n, frameReadChunk))
	for len(body) < n {
		step := min(n-len(body), frameReadChunk)
		body = slices.Grow(body, step)
		m, err := io.ReadFull(r, body[len(body):len(body)+step])
		body = body[:len(body)+m]
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, err
		}
	}
	return k, body, nil
}

// Marshal encodes s; it fails for a body out of bounds.
func (s *Submit) Marshal() ([]byte, error) {
	if len(s.Tx) == 0 || len(s.Tx) > MaxTxBytes {
		return nil, fmt.Errorf("mempool: transaction of %d bytes (1..%d)", len(s.Tx), MaxTxBytes)
	}
	if s.HasMaxFeeRate && s.MaxFeeRate > MaxFeeRateSatPerKvB {
		return nil, fmt.Errorf("mempool: max fee rate %d sat/kvB over %d", s.MaxFeeRate, MaxFeeRateSatPerKvB)
	}
	b := make([]byte, 0, 9+len(s.Tx))
	if s.HasMaxFeeRate {
		b = append(b, flagMaxFeeRate)
		b = binary.BigEndian.AppendUint64(b, s.MaxFeeRate)
	} else {
		b = append(b, 0)
	}
	return append(b, s.Tx...), nil
}

// ParseSubmit decodes a SUBMIT body. Tx aliases b.
func ParseSubmit(b []byte) (Submit, error) {
	var s Submit
	if len(b) < 1 {
		return s, malformed("SUBMIT: empty")
	}
	flags := b[0]
	b = b[1:]
	if flags&^flagMaxFeeRate != 0 {
		return s, malformed("SUBMIT: unknown flags %#x", flags)
	}
	if flags&flagMaxFeeRate != 0 {
		if len(b) < 8 {
			return s, malformed("SUBMIT: short max_fee_rate")
		}
		s.HasMaxFeeRate = true
		s.MaxFeeRate = binary.BigEndian.Uint64(b)
		b = b[8:]
		if s.MaxFeeRate > MaxFeeRateSatPerKvB {
			return s, malformed("SUBMIT: max_fee_rate %d over %d", s.MaxFeeRate, MaxFeeRateSatPerKvB)
		}
	}
	if len(b) == 0 || len(b) > MaxTxBytes {
		return s, malformed("SUBMIT: transaction of %d bytes (1..%d)", len(b), MaxTxBytes)
	}
	s.Tx = b
	return s, nil
}

// Marshal encodes q.
func (q *Query) Marshal() []byte { return append([]byte(nil), q.TxID[:]...) }

// ParseQuery decodes a QUERY body.
func ParseQuery(b []byte) (Query, error) {
	var q Query
	if len(b) != 32 {
		return q, malformed("QUERY: %d bytes, want 32", len(b))
	}
	copy(q.TxID[:], b)
	return q, nil
}

// checkMessage reports why m is not a valid verdict message, or "".
func checkMessage(m string) string {
	if len(m) > MaxMessageLen {
		return fmt.Sprintf("message of %d bytes, over %d", len(m), MaxMessageLen)
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 0x20 || m[i] > 0x7e {
			return "message is not printable ASCII"
		}
	}
	return ""
}

// check reports why v breaks §6.2, or "".
func (v *Verdict) check() string {
	switch v.Status {
	case Accepted, Unavailable:
		if v.Code != 0 {
			return fmt.Sprintf("status %d with code %d", v.Status, v.Code)
		}
		if v.Status == Accepted && v.Message != "" {
			return "accepted with a message"
		}
	case Rejected:
		if v.Code >= 0 {
			return fmt.Sprintf("rejected with code %d (want negative)", v.Code)
		}
	default:
		return fmt.Sprintf("unknown status %d", v.Status)
	}
	return checkMessage(v.Message)
}

// Marshal encodes v; it fails for a verdict that breaks §6.2.
func (v *Verdict) Marshal() ([]byte, error) {
	if why := v.check(); why != "" {
		return nil, fmt.Errorf("mempool: verdict: %s", why)
	}
	b := make([]byte, 0, 6+len(v.Message))
	b = append(b, byte(v.Status))
	b = binary.BigEndian.AppendUint32(b, uint32(v.Code))
	b = append(b, byte(len(v.Message)))
	return append(b, v.Message...), nil
}

// ParseVerdict decodes a VERDICT body.
func ParseVerdict(b []byte) (Verdict, error) {
	var v Verdict
	if len(b) < 6 {
		return v, malformed("VERDICT: %d bytes, under 6", len(b))
	}
	v.Status = VerdictStatus(b[0])
	v.Code = int32(binary.BigEndian.Uint32(b[1:5]))
	n := int(b[5])
	if len(b) != 6+n {
		return Verdict{}, malformed("VERDICT: message length %d but %d bytes follow", n, len(b)-6)
	}
	v.Message = string(b[6:])
	if why := v.check(); why != "" {
		return Verdict{}, malformed("VERDICT: %s", why)
	}
	return v, nil
}

// Marshal encodes st.
func (st TxState) Marshal() []byte { return []byte{byte(st)} }

// ParseStatus decodes a STATUS body.
func ParseStatus(b []byte) (TxState, error) {
	if len(b) != 1 {
		return 0, malformed("STATUS: %d bytes, want 1", len(b))
	}
	if b[0] > byte(StateUnavailable) {
		return 0, malformed("STATUS: unknown state %d", b[0])
	}
	return TxState(b[0]), nil
}

// rejectCode is the code a rejection reaches the user's RPC client with:
// one sendrawtransaction itself can fail with, else -26. The delivery node
// picks it, and a JSON-RPC code (-32601 method not found, say) or -28
// (warming up) would make a wallet act on a lie.
func rejectCode(c int32) int {
	switch c {
	case CodeMisc, -8, CodeDecode, CodeVerify, CodeRejected, CodeAlreadyInChain:
		return int(c)
	}
	return CodeRejected
}

// Err returns v as an error: nil when Accepted, an *Error with the
// backend's code (one sendrawtransaction uses, else -26) when Rejected,
// and an *Error with CodeNotConnected when Unavailable.
func (v Verdict) Err() error {
	switch v.Status {
	case Accepted:
		return nil
	case Rejected:
		return &Error{Code: rejectCode(v.Code), Message: v.Message}
	}
	msg := "delivery node unavailable"
	if v.Message != "" {
		msg += ": " + v.Message
	}
	return &Error{Code: CodeNotConnected, Message: msg}
}
