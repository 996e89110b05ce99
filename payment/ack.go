package payment

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/co-infuse/co-infuse/voucher"
)

// AckVersion is the version of the TOPUP_ACK payload layout (Ack).
const AckVersion = 1

// AckLen is the length of an encoded Ack: the layout is fixed.
const AckLen = 1 + 1 + 8 + 8 + 8

// maxChargedBytes bounds Ack.Charged so it fits an int64.
const maxChargedBytes = 1<<63 - 1

// AckReason says why a hop credited less than a TOPUP offered (PROTOCOL.md
// §5.3). When a batch has several bad vouchers it names the first refusal
// in the order the hop checks them (VOUCHERS.md §2.4): format, keyset,
// validity window, signature, spent set.
type AckReason uint8

// TOPUP_ACK reasons (PROTOCOL.md §5.3). A parser rejects any other value.
const (
	// ReasonNone: every voucher was credited.
	ReasonNone AckReason = 0
	// ReasonMalformed: the batch did not decode (voucher.ErrMalformed).
	ReasonMalformed AckReason = 1
	// ReasonUnknownKeyset: a voucher names a keyset the hop does not hold.
	ReasonUnknownKeyset AckReason = 2
	// ReasonExpired: a voucher's keyset is past its redemption window.
	ReasonExpired AckReason = 3
	// ReasonNotYetValid: a voucher's keyset is not valid yet.
	ReasonNotYetValid AckReason = 4
	// ReasonForged: a voucher's signature does not verify, or its
	// denomination has no key.
	ReasonForged AckReason = 5
	// ReasonSpent: a voucher was redeemed before (a replay, or a TOPUP
	// whose answer was lost).
	ReasonSpent AckReason = 6
	// ReasonUnavailable: the hop could not redeem now (its spent set
	// failed, or it timed out); nothing was redeemed, so the vouchers may
	// be offered again later.
	ReasonUnavailable AckReason = 7
	// ReasonUnknownSession: the hop holds no session for the circuit;
	// nothing was redeemed.
	ReasonUnknownSession AckReason = 8
	// ReasonOther: refused for a reason this version does not name (the
	// hop sells nothing, or the batch was worth 0 sats).
	ReasonOther AckReason = 9

	maxAckReason = ReasonOther
)

var reasonNames = [...]string{
	ReasonNone:           "none",
	ReasonMalformed:      "malformed batch",
	ReasonUnknownKeyset:  "unknown keyset",
	ReasonExpired:        "keyset expired",
	ReasonNotYetValid:    "keyset not yet valid",
	ReasonForged:         "bad signature",
	ReasonSpent:          "already spent",
	ReasonUnavailable:    "mint unavailable",
	ReasonUnknownSession: "unknown session",
	ReasonOther:          "refused",
}

func (r AckReason) String() string {
	if r <= maxAckReason {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// Permanent reports whether vouchers refused for r can never be redeemed
// at this hop, so offering them again is pointless: they are spent, forged,
// of a keyset the hop does not hold, or past their keyset's window.
func (r AckReason) Permanent() bool {
	switch r {
	case ReasonUnknownKeyset, ReasonExpired, ReasonForged, ReasonSpent:
		return true
	}
	return false
}

// reasonFor maps a Redeem error to its TOPUP_ACK reason. A nil error is
// ReasonNone.
func reasonFor(err error) AckReason {
	switch {
	case err == nil:
		return ReasonNone
	case errors.Is(err, voucher.ErrMalformed):
		return ReasonMalformed
	case errors.Is(err, voucher.ErrUnknownKeyset):
		return ReasonUnknownKeyset
	case errors.Is(err, voucher.ErrExpired):
		return ReasonExpired
	case errors.Is(err, voucher.ErrNotYetValid):
		return ReasonNotYetValid
	case errors.Is(err, voucher.ErrBadSignature), errors.Is(err, voucher.ErrDenomination):
		return ReasonForged
	case errors.Is(err, voucher.ErrSpent):
		return ReasonSpent
	case errors.Is(err, voucher.ErrClosed), errors.Is(err, voucher.ErrUnavailable),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ReasonUnavailable
	case errors.Is(err, ErrUnknownSession):
		return ReasonUnknownSession
	}
	return ReasonOther
}

// Ack is the payload of a TOPUP_ACK (PROTOCOL.md §5.3), built by a hop's
// Ledger and parsed by the Client; circuit/cell carries it opaquely after
// the status byte:
//
//	version(1)=1 | reason(1) | credited_sat(8) | allowance(8) | charged(8)
//
// All integers are big-endian; allowance is two's complement.
type Ack struct {
	// Reason is ReasonNone when every voucher was credited, else why some
	// or all were not (§5.3 reason codes). It is never ReasonNone when
	// CreditedSat is 0.
	Reason AckReason
	// CreditedSat is the value of the vouchers the hop redeemed and
	// credited by this TOPUP, in sats.
	CreditedSat uint64
	// Allowance is the session's allowance after crediting, in bytes:
	// negative while in debt. Within ±MaxAllowanceBytes.
	Allowance int64
	// Charged is the bytes the hop has charged the session so far (every
	// RELAY cell in either direction, cell.Size each), up to 2^63-1.
	Charged uint64
}

// AppendBinary appends the encoded ack to b. It fails with ErrMalformedAck
// for an ack UnmarshalBinary would refuse.
func (a Ack) AppendBinary(b []byte) ([]byte, error) {
	if err := a.check(); err != nil {
		return b, err
	}
	b = append(b, AckVersion, byte(a.Reason)) // §5.3 version, reason
	b = binary.BigEndian.AppendUint64(b, a.CreditedSat)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Allowance))
	return binary.BigEndian.AppendUint64(b, a.Charged), nil
}

// UnmarshalBinary parses a TOPUP_ACK payload: exactly AckLen bytes,
// version 1, a known reason, a reason whenever nothing was credited, the
// allowance within ±MaxAllowanceBytes and charged below 2^63. Anything
// else fails with an error wrapping ErrMalformedAck, and a is unchanged.
func (a *Ack) UnmarshalBinary(data []byte) error {
	switch {
	case len(data) < AckLen:
		return fmt.Errorf("%w: %d bytes, want %d", ErrMalformedAck, len(data), AckLen)
	case len(data) > AckLen:
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformedAck, len(data)-AckLen)
	case data[0] != AckVersion: // §5.3 version
		return fmt.Errorf("%w: version %d", ErrMalformedAck, data[0])
	}
	v := Ack{
		Reason:      AckReason(data[1]),                          // §5.3 reason
		CreditedSat: binary.BigEndian.Uint64(data[2:10]),         // §5.3 credited_sat
		Allowance:   int64(binary.BigEndian.Uint64(data[10:18])), // §5.3 allowance
		Charged:     binary.BigEndian.Uint64(data[18:26]),        // §5.3 charged
	}
	if err := v.check(); err != nil {
		return err
	}
	*a = v
	return nil
}

// check is the bounds check UnmarshalBinary and AppendBinary share.
func (a Ack) check() error {
	switch {
	case a.Reason > maxAckReason:
		return fmt.Errorf("%w: unknown reason %d", ErrMalformedAck, uint8(a.Reason))
	case a.CreditedSat == 0 && a.Reason == ReasonNone:
		return fmt.Errorf("%w: nothing credited without a reason", ErrMalformedAck)
	case a.Allowance < -MaxAllowanceBytes || a.Allowance > MaxAllowanceBytes:
		return fmt.Errorf("%w: allowance %d out of range", ErrMalformedAck, a.Allowance)
	case a.Charged > maxChargedBytes:
		return fmt.Errorf("%w: charged %d out of range", ErrMalformedAck, a.Charged)
	}
	return nil
}
