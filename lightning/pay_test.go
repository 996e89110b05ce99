package lightning

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeStream replays payment updates then an error (io.EOF by default).
type fakeStream struct {
	updates []*lnrpc.Payment
	err     error
}

func (f *fakeStream) Recv() (*lnrpc.Payment, error) {
	if len(f.updates) == 0 {
		if f.err == nil {
			return nil, io.EOF
		}
		return nil, f.err
	}
	p := f.updates[0]
	f.updates = f.updates[1:]
	return p, nil
}

func TestAwaitFinal(t *testing.T) {
	t.Parallel()
	var pre [32]byte
	copy(pre[:], "preimage preimage preimage pre!!")
	hash := sha256.Sum256(pre[:])
	inv := Invoice{AmountSat: 1000, PayHash: hash}
	preHex := hex.EncodeToString(pre[:])
	otherHex := strings.Repeat("00", 32)

	tests := []struct {
		name   string
		stream *fakeStream
		want   error // nil means success with pre
	}{
		{"success after in flight", &fakeStream{updates: []*lnrpc.Payment{
			{Status: lnrpc.Payment_IN_FLIGHT},
			{Status: lnrpc.Payment_SUCCEEDED, PaymentPreimage: preHex},
		}}, nil},
		{"no route", &fakeStream{updates: []*lnrpc.Payment{{Status: lnrpc.Payment_FAILED,
			FailureReason: lnrpc.PaymentFailureReason_FAILURE_REASON_NO_ROUTE}}}, ErrNoRoute},
		{"insufficient", &fakeStream{updates: []*lnrpc.Payment{{Status: lnrpc.Payment_FAILED,
			FailureReason: lnrpc.PaymentFailureReason_FAILURE_REASON_INSUFFICIENT_BALANCE}}}, ErrInsufficientBalance},
		{"timeout", &fakeStream{updates: []*lnrpc.Payment{{Status: lnrpc.Payment_FAILED,
			FailureReason: lnrpc.PaymentFailureReason_FAILURE_REASON_TIMEOUT}}}, ErrPaymentTimeout},
		{"wrong details", &fakeStream{updates: []*lnrpc.Payment{{Status: lnrpc.Payment_FAILED,
			FailureReason: lnrpc.PaymentFailureReason_FAILURE_REASON_INCORRECT_PAYMENT_DETAILS}}}, ErrPaymentFailed},
		{"already exists", &fakeStream{err: status.Error(codes.AlreadyExists, "invoice is already paid")}, errPaymentExists},
		{"permission", &fakeStream{err: status.Error(codes.Unknown, "permission denied")}, ErrPermissionDenied},
		{"eof before final", &fakeStream{updates: []*lnrpc.Payment{{Status: lnrpc.Payment_IN_FLIGHT}}}, errAny},
		{"preimage mismatch", &fakeStream{updates: []*lnrpc.Payment{
			{Status: lnrpc.Payment_SUCCEEDED, PaymentPreimage: otherHex}}}, errAny},
		{"preimage not hex", &fakeStream{updates: []*lnrpc.Payment{
			{Status: lnrpc.Payment_SUCCEEDED, PaymentPreimage: "zz"}}}, errAny},
	}
	c := &Client{cfg: Config{MacaroonPath: "m"}.withDefaults(), log: slog.Default()}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := c.awaitFinal(tc.stream, inv, 5, rpcSendPaymentV2)
			switch {
			case tc.want == nil:
				if err != nil || got != pre {
					t.Fatalf("awaitFinal = %x, %v; want preimage", got, err)
				}
			case tc.want == errAny:
				if err == nil {
					t.Fatal("awaitFinal succeeded")
				}
			default:
				if !errors.Is(err, tc.want) {
					t.Fatalf("awaitFinal err = %v, want %v", err, tc.want)
				}
			}
			if err != nil && got != ([32]byte{}) {
				t.Errorf("awaitFinal returned a preimage with an error")
			}
		})
	}
}

// errAny marks a case where any error will do.
var errAny = errors.New("any error")

func TestInvoiceFromPayReq(t *testing.T) {
	t.Parallel()
	payee := "02" + strings.Repeat("ab", 32)
	hash := strings.Repeat("cd", 32)
	good := lnrpc.PayReq{Destination: payee, PaymentHash: hash, NumSatoshis: 1, NumMsat: 1500,
		Timestamp: 1_700_000_000, Expiry: 3600, Description: "memo"}
	inv, err := invoiceFromPayReq(&good)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Payee != payee || hex.EncodeToString(inv.PayHash[:]) != hash || inv.AmountSat != 1 ||
		inv.AmountMsat != 1500 || inv.Memo != "memo" ||
		!inv.Expiry.Equal(time.Unix(1_700_000_000+3600, 0)) {
		t.Fatalf("invoiceFromPayReq = %+v", inv)
	}
	bad := []struct {
		name string
		edit func(*lnrpc.PayReq)
	}{
		{"short payee", func(p *lnrpc.PayReq) { p.Destination = "02ab" }},
		{"payee not hex", func(p *lnrpc.PayReq) { p.Destination = strings.Repeat("x", 66) }},
		{"short hash", func(p *lnrpc.PayReq) { p.PaymentHash = "cd" }},
		{"negative amount", func(p *lnrpc.PayReq) { p.NumMsat = -1 }},
		{"negative expiry", func(p *lnrpc.PayReq) { p.Expiry = -1 }},
		{"huge expiry", func(p *lnrpc.PayReq) { p.Expiry = 1 << 40 }},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := lnrpc.PayReq{Destination: good.Destination, PaymentHash: good.PaymentHash,
				NumMsat: good.NumMsat, Timestamp: good.Timestamp, Expiry: good.Expiry}
			tc.edit(&p)
			if _, err := invoiceFromPayReq(&p); !errors.Is(err, ErrBadInvoice) {
				t.Fatalf("invoiceFromPayReq = %v, want ErrBadInvoice", err)
			}
		})
	}
}
