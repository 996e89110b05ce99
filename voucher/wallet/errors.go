package wallet

import "errors"

// Wallet failures. Errors from Buy, Resume and Reserve wrap one of these or
// one of voucher's sentinels (voucher.ErrNotPaid, voucher.ErrBadSignature, …).
var (
	// ErrBudget: the purchase would exceed the daily sat budget.
	ErrBudget = errors.New("wallet: daily budget exhausted")
	// ErrPrice: the node's quoted price is above the configured maximum.
	ErrPrice = errors.New("wallet: price above maximum")
	// ErrQuoteMismatch: the quote does not match the request or the node's
	// advert (amount, payee, keyset). Nothing was paid.
	ErrQuoteMismatch = errors.New("wallet: quote does not match")
	// ErrInvoiceMismatch: the invoice does not match the quote (amount,
	// payee, payment hash, expiry). Nothing was paid.
	ErrInvoiceMismatch = errors.New("wallet: invoice does not match quote")
	// ErrUnpublishedKeyset: the node asked us to use a keyset it has not
	// published, or publishes too many mintable keysets.
	ErrUnpublishedKeyset = errors.New("wallet: keyset not published")
	// ErrKeysetWindow: the node publishes a keyset that mints for less
	// than Config.MinMintWindow (default 7 days). Short-lived keysets would
	// let a node tell its buyers apart by when they bought. Nothing was
	// paid; the node goes into backoff.
	ErrKeysetWindow = errors.New("wallet: keyset minting window too short")
	// ErrKeysetChurn: more than Config.MaxNewKeysets (default 3) of the
	// node's keysets were first seen within Config.NewKeysetPeriod
	// (default 30 days). A node that keeps showing new keysets could give
	// each client one of its own. Nothing was paid; the refusal holds,
	// across restarts, until enough of those sightings are older than the
	// period.
	ErrKeysetChurn = errors.New("wallet: node publishes new keysets too often")
	// ErrPayment: our LND could not pay (or is down). The purchase is kept
	// and Resume retries it; the invoice is never paid twice.
	ErrPayment = errors.New("wallet: payment failed")
	// ErrInvoiceExpired: the invoice expired unpaid; the purchase is void.
	ErrInvoiceExpired = errors.New("wallet: invoice expired unpaid")
	// ErrBackoff: the node misbehaved recently and is skipped for a while.
	ErrBackoff = errors.New("wallet: node in backoff")
	// ErrInsufficient: not enough signed vouchers at the node.
	ErrInsufficient = errors.New("wallet: insufficient vouchers")
	// ErrUnknownVoucher: MarkSpent or Release of a voucher the wallet does
	// not hold in the reserved state.
	ErrUnknownVoucher = errors.New("wallet: unknown or unreserved voucher")
	// ErrClosed: the wallet was stopped.
	ErrClosed = errors.New("wallet: closed")
	// ErrInProgress: another call is advancing the same purchase.
	ErrInProgress = errors.New("wallet: purchase in progress")
)
