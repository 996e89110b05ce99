package lightning

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// paymentStream is what SendPaymentV2 and TrackPaymentV2 both return.
type paymentStream interface {
	Recv() (*lnrpc.Payment, error)
}

// PayInvoice pays payReq, spending at most feeLimitSat satoshis in routing
// fees (0 allows only fee-free routes such as a direct channel), and returns
// the preimage once LND reports the payment final.
//
// It is idempotent per payment hash: if this node already paid the invoice,
// or a payment for it is in flight, PayInvoice follows the existing payment
// with TrackPaymentV2 and returns its preimage; it never pays twice. If an
// earlier attempt failed, LND tries again. A failed
// payment wraps ErrNoRoute, ErrInsufficientBalance, ErrPaymentTimeout or
// ErrPaymentFailed; an expired invoice gives ErrInvoiceExpired. LND stops routing after cfg.PaymentTimeout; ctx bounds the
// wait for the result. Needs offchain:read and offchain:write.
func (c *Client) PayInvoice(ctx context.Context, payReq string, feeLimitSat int64) ([32]byte, error) {
	var zero [32]byte
	if feeLimitSat < 0 {
		return zero, fmt.Errorf("pay invoice: fee limit %d sat: must not be negative", feeLimitSat)
	}
	inv, err := c.DecodeInvoice(ctx, payReq)
	if err != nil {
		return zero, fmt.Errorf("pay invoice: %w", err)
	}
	if inv.AmountMsat == 0 {
		return zero, fmt.Errorf("pay invoice: %w: invoice has no amount", ErrBadInvoice)
	}
	if c.closed.Load() {
		return zero, ErrClosed
	}
	// The stream context outlives LND's own payment timeout a little so that
	// we see LND's final verdict rather than our own deadline.
	sctx, cancel := context.WithTimeout(ctx, c.cfg.PaymentTimeout+c.cfg.RPCTimeout)
	defer cancel()

	stream, err := c.router.SendPaymentV2(sctx, &routerrpc.SendPaymentRequest{
		PaymentRequest:    payReq,
		FeeLimitSat:       feeLimitSat,
		TimeoutSeconds:    int32(c.cfg.PaymentTimeout / time.Second),
		NoInflightUpdates: true,
	})
	if err != nil {
		return zero, fmt.Errorf("pay invoice: %w", classify(rpcSendPaymentV2, c.cfg, err))
	}
	pre, err := c.awaitFinal(stream, inv, feeLimitSat, rpcSendPaymentV2)
	if !errors.Is(err, errPaymentExists) {
		if err == nil {
			c.log.Debug("payment succeeded", "amount_sat", inv.AmountSat)
		}
		return pre, err
	}

	// LND refused a second payment for this hash: it succeeded before or is
	// in flight. Follow the existing payment instead.
	c.log.Debug("payment already exists, tracking it")
	track, err := c.router.TrackPaymentV2(sctx, &routerrpc.TrackPaymentRequest{
		PaymentHash:       inv.PayHash[:],
		NoInflightUpdates: true,
	})
	if err != nil {
		return zero, fmt.Errorf("pay invoice: %w", classify(rpcTrackPaymentV2, c.cfg, err))
	}
	return c.awaitFinal(track, inv, feeLimitSat, rpcTrackPaymentV2)
}

// errPaymentExists is LND's AlreadyExists answer to SendPaymentV2: the hash
// was paid before or a payment for it is in flight.
var errPaymentExists = errors.New("payment for this hash already exists")

// awaitFinal reads payment updates until one is final. LND's AlreadyExists
// becomes errPaymentExists; other errors are classified.
func (c *Client) awaitFinal(stream paymentStream, inv Invoice, feeLimitSat int64, method string) ([32]byte, error) {
	var zero [32]byte
	for {
		p, err := stream.Recv()
		if err == io.EOF {
			return zero, fmt.Errorf("pay invoice: lnd %s: stream ended before the payment was final", shortName(method))
		}
		if err != nil {
			if status.Code(err) == codes.AlreadyExists {
				return zero, errPaymentExists
			}
			return zero, fmt.Errorf("pay invoice: %w", classify(method, c.cfg, err))
		}
		switch p.Status {
		case lnrpc.Payment_SUCCEEDED:
			return checkPreimage(p.PaymentPreimage, inv.PayHash)
		case lnrpc.Payment_FAILED:
			return zero, paymentFailure(p.FailureReason, inv, feeLimitSat)
		}
	}
}

// checkPreimage decodes LND's hex preimage and checks it hashes to payHash.
func checkPreimage(preHex string, payHash [32]byte) ([32]byte, error) {
	var pre [32]byte
	b, err := hex.DecodeString(preHex)
	if err != nil || len(b) != len(pre) {
		return pre, fmt.Errorf("pay invoice: lnd reported success without a 32-byte preimage")
	}
	copy(pre[:], b)
	sum := sha256.Sum256(pre[:])
	if subtle.ConstantTimeCompare(sum[:], payHash[:]) != 1 {
		return [32]byte{}, fmt.Errorf("pay invoice: lnd reported a preimage that does not match the payment hash")
	}
	return pre, nil
}

// paymentFailure maps LND's final failure reason to a sentinel with advice.
func paymentFailure(reason lnrpc.PaymentFailureReason, inv Invoice, feeLimitSat int64) error {
	switch reason {
	case lnrpc.PaymentFailureReason_FAILURE_REASON_NO_ROUTE:
		return fmt.Errorf("pay invoice: %w: LND found no route for %d sat within a %d sat fee limit; open a channel with enough outbound capacity toward the payee or raise the fee limit",
			ErrNoRoute, inv.AmountSat, feeLimitSat)
	case lnrpc.PaymentFailureReason_FAILURE_REASON_INSUFFICIENT_BALANCE:
		return fmt.Errorf("pay invoice: %w: the local channels cannot send %d sat plus fees; add funds to a channel or open a new one",
			ErrInsufficientBalance, inv.AmountSat)
	case lnrpc.PaymentFailureReason_FAILURE_REASON_TIMEOUT:
		return fmt.Errorf("pay invoice: %w", ErrPaymentTimeout)
	default:
		return fmt.Errorf("pay invoice: %w: %s", ErrPaymentFailed, reason)
	}
}
