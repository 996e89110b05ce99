package lightning

import (
	"context"
	"encoding/hex"
	"fmt"
	"math"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
)

// maxPayReqLen caps a payment request we pass to LND; BOLT 11 strings with
// many route hints stay far below this.
const maxPayReqLen = 7089

// Invoice is a decoded BOLT 11 payment request.
type Invoice struct {
	// AmountSat is the amount asked for, in satoshis, rounded down;
	// 0 means the payer chooses.
	AmountSat int64
	// AmountMsat is the exact amount asked for, in millisatoshis.
	AmountMsat int64
	// Payee is the payee's node public key, 66 lowercase hex digits.
	Payee string
	// PayHash is the payment hash.
	PayHash [32]byte
	// Expiry is when the invoice stops being payable (timestamp + expiry).
	Expiry time.Time
	// Memo is the invoice's description.
	Memo string
}

// CreateInvoice asks LND for an invoice of amtSat satoshis that expires after
// expiry (rounded down to whole seconds, at least one). It returns the BOLT 11
// payment request and its payment hash. Needs invoices:write.
func (c *Client) CreateInvoice(ctx context.Context, amtSat int64, memo string, expiry time.Duration) (string, [32]byte, error) {
	var hash [32]byte
	if amtSat <= 0 {
		return "", hash, fmt.Errorf("create invoice: amount %d sat: must be positive", amtSat)
	}
	if expiry < time.Second {
		return "", hash, fmt.Errorf("create invoice: expiry %v: must be at least 1s", expiry)
	}
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return "", hash, err
	}
	defer cancel()
	resp, err := c.ln.AddInvoice(ctx, &lnrpc.Invoice{
		Memo:   memo,
		Value:  amtSat,
		Expiry: int64(expiry / time.Second),
	})
	if err != nil {
		return "", hash, classify(rpcAddInvoice, c.cfg, err)
	}
	if len(resp.RHash) != len(hash) {
		return "", hash, fmt.Errorf("lnd AddInvoice: payment hash has %d bytes, want 32", len(resp.RHash))
	}
	copy(hash[:], resp.RHash)
	return resp.PaymentRequest, hash, nil
}

// InvoiceSettled reports whether the invoice with payHash has been paid.
// An unknown hash gives ErrInvoiceNotFound. Needs invoices:read.
func (c *Client) InvoiceSettled(ctx context.Context, payHash [32]byte) (bool, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	inv, err := c.ln.LookupInvoice(ctx, &lnrpc.PaymentHash{RHash: payHash[:]})
	if err != nil {
		return false, classify(rpcLookupInvoice, c.cfg, err)
	}
	return inv.State == lnrpc.Invoice_SETTLED, nil
}

// DecodeInvoice asks LND to decode payReq. A malformed request, or one for
// another network, gives ErrBadInvoice. Needs offchain:read.
func (c *Client) DecodeInvoice(ctx context.Context, payReq string) (Invoice, error) {
	if payReq == "" || len(payReq) > maxPayReqLen {
		return Invoice{}, fmt.Errorf("decode invoice: %w: length %d", ErrBadInvoice, len(payReq))
	}
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return Invoice{}, err
	}
	defer cancel()
	pr, err := c.ln.DecodePayReq(ctx, &lnrpc.PayReqString{PayReq: payReq})
	if err != nil {
		return Invoice{}, classify(rpcDecodePayReq, c.cfg, err)
	}
	return invoiceFromPayReq(pr)
}

// invoiceFromPayReq checks and converts LND's decoded payment request.
func invoiceFromPayReq(pr *lnrpc.PayReq) (Invoice, error) {
	var inv Invoice
	pub, err := hex.DecodeString(pr.Destination)
	if err != nil || len(pub) != 33 {
		return inv, fmt.Errorf("decode invoice: %w: payee %q is not a 33-byte hex key", ErrBadInvoice, pr.Destination)
	}
	h, err := hex.DecodeString(pr.PaymentHash)
	if err != nil || len(h) != 32 {
		return inv, fmt.Errorf("decode invoice: %w: payment hash is not 32 hex bytes", ErrBadInvoice)
	}
	if pr.NumMsat < 0 || pr.Timestamp < 0 || pr.Expiry < 0 || pr.Expiry > math.MaxInt32 {
		return inv, fmt.Errorf("decode invoice: %w: negative or oversized field", ErrBadInvoice)
	}
	inv.Payee = hex.EncodeToString(pub)
	copy(inv.PayHash[:], h)
	inv.AmountMsat = pr.NumMsat
	inv.AmountSat = pr.NumMsat / 1000
	inv.Expiry = time.Unix(pr.Timestamp, 0).Add(time.Duration(pr.Expiry) * time.Second)
	inv.Memo = pr.Description
	return inv, nil
}
