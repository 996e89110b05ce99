package voucher

import "errors"

// Voucher and keyset failures. Decoders and verifiers wrap exactly one of
// these, so callers match them with errors.Is.
var (
	// ErrMalformed: bytes that do not decode (bad length, bad field, trailing
	// bytes). Always the peer's fault.
	ErrMalformed = errors.New("voucher: malformed encoding")
	// ErrUnknownKeyset: the voucher or request names a keyset the verifier
	// does not hold (or, for a client, one the node has not published).
	ErrUnknownKeyset = errors.New("voucher: unknown keyset")
	// ErrDenomination: the amount is not a power of two the keyset has a key for.
	ErrDenomination = errors.New("voucher: no key for denomination")
	// ErrBadSignature: the signature does not verify under the denomination's key.
	ErrBadSignature = errors.New("voucher: bad signature")
	// ErrExpired: the keyset is past its redemption deadline (or, for minting,
	// past the end of its minting window).
	ErrExpired = errors.New("voucher: keyset expired")
	// ErrNotYetValid: the keyset's validity window has not started.
	ErrNotYetValid = errors.New("voucher: keyset not yet valid")
	// ErrSpent: the voucher was redeemed before (a replay).
	ErrSpent = errors.New("voucher: already spent")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("voucher: closed")
	// ErrAmount: an amount that cannot be split into the keyset's
	// denominations within the protocol's caps.
	ErrAmount = errors.New("voucher: amount out of range")
)

// Mint protocol failures (docs/VOUCHERS.md §3.5). The node answers with the
// matching error code; the client maps the code back to the same sentinel.
var (
	// ErrBadRequest: the request was well formed but inconsistent (blinded
	// amounts that do not add up to the quote, a blinded message out of range).
	ErrBadRequest = errors.New("voucher: mint: bad request")
	// ErrQuoteUnknown: no such quote at the node.
	ErrQuoteUnknown = errors.New("voucher: mint: unknown quote")
	// ErrNotPaid: the quote's invoice is not settled (yet).
	ErrNotPaid = errors.New("voucher: mint: invoice not settled")
	// ErrQuoteIssued: the quote was already signed for a different set of
	// blinded messages; a quote is signed exactly once.
	ErrQuoteIssued = errors.New("voucher: mint: quote already issued")
	// ErrBusy: the node refuses new quotes for now (open-quote cap reached).
	ErrBusy = errors.New("voucher: mint: busy")
	// ErrUnavailable: the node could not serve the request (its Lightning
	// node is down, its store failed). Retry later.
	ErrUnavailable = errors.New("voucher: mint: unavailable")
	// ErrSwapConflict: a swap request reuses the id of an earlier swap
	// with a different body (§3.10); a swap id is answered with one set
	// of signatures only.
	ErrSwapConflict = errors.New("voucher: mint: swap id reused with another request")
)
