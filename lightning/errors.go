package lightning

import "errors"

// Sentinel errors returned (wrapped) by this package; match with errors.Is.
// The wrapping error text carries the detail a user needs: which file, which
// permission, which RPC.
var (
	// ErrInvalidConfig means a Config field is unusable; the text names it.
	ErrInvalidConfig = errors.New("invalid lnd config")

	// ErrTLSCert means the TLS certificate file is missing, unreadable, not
	// PEM, or does not match the certificate LND presents.
	ErrTLSCert = errors.New("lnd tls certificate problem")

	// ErrMacaroon means the macaroon file is missing, unreadable, not a
	// macaroon, or was rejected by LND (for example it belongs to another
	// node or has expired).
	ErrMacaroon = errors.New("lnd macaroon problem")

	// ErrPermissionDenied means the macaroon is valid but lacks a permission
	// that an RPC needs; the text names the permission.
	ErrPermissionDenied = errors.New("lnd macaroon lacks a permission")

	// ErrUnreachable means no gRPC connection to LND could be made.
	ErrUnreachable = errors.New("lnd unreachable")

	// ErrWalletLocked means LND runs but its wallet is locked (or not yet
	// created); run `lncli unlock`.
	ErrWalletLocked = errors.New("lnd wallet locked")

	// ErrNotReady means LND is still starting up; retry shortly.
	ErrNotReady = errors.New("lnd still starting")

	// ErrInvoiceNotFound means LND knows no invoice with that payment hash.
	ErrInvoiceNotFound = errors.New("invoice not found")

	// ErrBadInvoice means a payment request could not be decoded or is for
	// another network.
	ErrBadInvoice = errors.New("invalid payment request")

	// ErrInvoiceExpired means the invoice can no longer be paid; ask the
	// payee for a new one.
	ErrInvoiceExpired = errors.New("invoice expired")

	// ErrNoRoute means LND found no route to the payee.
	ErrNoRoute = errors.New("no route to payee")

	// ErrInsufficientBalance means the local channels lack the outbound
	// liquidity for the payment plus fees.
	ErrInsufficientBalance = errors.New("insufficient channel balance")

	// ErrPaymentTimeout means the payment did not complete before its
	// timeout.
	ErrPaymentTimeout = errors.New("payment timed out")

	// ErrPaymentFailed means the payment failed for another final reason
	// (wrong payment details, canceled, or an error along the route).
	ErrPaymentFailed = errors.New("payment failed")

	// ErrStakeUnverified means a stake signature did not verify: it recovers
	// no key, or lnd does not know the signer in its channel graph.
	ErrStakeUnverified = errors.New("stake signature not verified")

	// ErrNodeNotInGraph means this LND's channel graph has no such node
	// (it has no public channel this node has heard of).
	ErrNodeNotInGraph = errors.New("node not in channel graph")

	// ErrClosed means the Client was used after Close.
	ErrClosed = errors.New("lightning client closed")
)
