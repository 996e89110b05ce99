package payment

import "errors"

var (
	// ErrExhausted: a session ran more than its grace into debt; a hop
	// refuses its cells. Errors carrying it also wrap circuit.ErrPayment,
	// so the engine destroys the circuit with reason payment (DESTROY 8).
	ErrExhausted = errors.New("payment: session allowance exhausted")
	// ErrUnknownSession: a TOPUP names a session this ledger does not hold
	// (its circuit has already been torn down). Nothing was redeemed.
	ErrUnknownSession = errors.New("payment: unknown session")
	// ErrNothingCredited: a TOPUP's vouchers were all refused (forged,
	// spent, wrong keyset, expired) or worth 0 sats; the hop answers
	// TOPUP_ACK status 1. The error also wraps Redeem's error, if any.
	ErrNothingCredited = errors.New("payment: top-up credited nothing")
	// ErrMalformedAck: a TOPUP_ACK payload is not a valid Ack (PROTOCOL.md
	// §5.3), or contradicts its status. The hop's fault: the client stops
	// paying it and closes the circuit.
	ErrMalformedAck = errors.New("payment: malformed TOPUP_ACK")
	// ErrOverCharged: a hop's TOPUP_ACK reports more bytes charged than
	// the client counted for it (plus OverChargeToleranceBytes), or less
	// credit than its advertised price buys. The client stops paying it
	// and closes the circuit.
	ErrOverCharged = errors.New("payment: hop over-charges")
	// ErrRateLimited: more paid circuits were opened in the last minute
	// than ClientConfig.MaxPaidCircuitsPerMinute allows; nothing was paid.
	ErrRateLimited = errors.New("payment: too many new paid circuits; try again shortly")
	// ErrClosed: the Client or Circuit has been closed.
	ErrClosed = errors.New("payment: closed")
	// ErrConfig: a Config field is missing or out of range; the message
	// names the field.
	ErrConfig = errors.New("payment: bad config")
)
