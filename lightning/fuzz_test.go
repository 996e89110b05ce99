package lightning

import (
	"errors"
	"testing"

	"github.com/lightningnetwork/lnd/lnrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// FuzzClassify: whatever LND says, classify returns a non-nil error that
// names the RPC and never panics.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{
		"wallet locked, unlock it to enable full RPC access",
		"permission denied",
		"verification failed: signature mismatch after caveat verification",
		"transport: authentication handshake failed: tls: failed to verify certificate",
		"invoice expired. Valid until 2026-01-01",
		"unable to find a path to destination",
		"",
	} {
		f.Add(uint32(codes.Unknown), s, uint8(0))
		f.Add(uint32(codes.Unavailable), s, uint8(4))
	}
	methods := []string{rpcGetInfo, rpcAddInvoice, rpcLookupInvoice, rpcDecodePayReq,
		rpcSendPaymentV2, rpcTrackPaymentV2, rpcQueryRoutes, "weird"}
	cfg := Config{Host: "127.0.0.1:10009", TLSCertPath: "c", MacaroonPath: "m"}
	f.Fuzz(func(t *testing.T, code uint32, msg string, m uint8) {
		method := methods[int(m)%len(methods)]
		in := status.Error(codes.Code(code%20), msg)
		if in == nil { // codes.OK makes no error
			if classify(method, cfg, in) != nil {
				t.Fatal("classify invented an error")
			}
			return
		}
		err := classify(method, cfg, in)
		if err == nil || err.Error() == "" {
			t.Fatal("classify lost the error")
		}
	})
}

// FuzzInvoiceFromPayReq: any decoded request either converts into an Invoice
// whose fields round-trip, or fails with ErrBadInvoice; never a panic.
func FuzzInvoiceFromPayReq(f *testing.F) {
	f.Add("02"+"ab"+"0000000000000000000000000000000000000000000000000000000000000000",
		"cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd", int64(1500), int64(1_700_000_000), int64(3600))
	f.Add("", "", int64(-1), int64(-1), int64(-1))
	f.Fuzz(func(t *testing.T, dest, hash string, msat, ts, expiry int64) {
		inv, err := invoiceFromPayReq(&lnrpc.PayReq{Destination: dest, PaymentHash: hash,
			NumMsat: msat, Timestamp: ts, Expiry: expiry})
		if err != nil {
			if !errors.Is(err, ErrBadInvoice) {
				t.Fatalf("error %v is not ErrBadInvoice", err)
			}
			return
		}
		if len(inv.Payee) != 66 || inv.AmountMsat != msat || inv.AmountSat != msat/1000 || msat < 0 {
			t.Fatalf("bad conversion %+v from msat %d", inv, msat)
		}
	})
}
