package lightning

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	cfg := Config{Host: "127.0.0.1:10009", TLSCertPath: "/lnd/tls.cert", MacaroonPath: "/lnd/ro.macaroon"}
	tests := []struct {
		name     string
		method   string
		err      error
		want     error    // sentinel, or nil for none of ours
		contains []string // advice the user must see
	}{
		{"nil", rpcGetInfo, nil, nil, nil},
		{"wallet locked", rpcGetInfo,
			status.Error(codes.Unknown, "wallet locked, unlock it to enable full RPC access"),
			ErrWalletLocked, []string{"lncli unlock", "127.0.0.1:10009"}},
		{"wallet locked unavailable", rpcGetInfo,
			status.Error(codes.Unavailable, "wallet locked, unlock it to enable full RPC access"),
			ErrWalletLocked, []string{"lncli unlock"}},
		{"no wallet", rpcGetInfo,
			status.Error(codes.Unknown, "wallet not created, create one to enable full RPC access"),
			ErrWalletLocked, []string{"lncli create"}},
		{"starting", rpcGetInfo,
			status.Error(codes.Unknown, "the RPC server is in the process of starting up, but not yet ready to accept calls"),
			ErrNotReady, []string{"still starting"}},
		{"waiting to start", rpcGetInfo,
			status.Error(codes.Unknown, "waiting to start, RPC services not available"),
			ErrNotReady, nil},
		{"permission denied text", rpcAddInvoice,
			status.Error(codes.Unknown, "permission denied"),
			ErrPermissionDenied, []string{"invoices:write", "/lnd/ro.macaroon", "bakemacaroon"}},
		{"permission denied code", rpcSendPaymentV2,
			status.Error(codes.PermissionDenied, "nope"),
			ErrPermissionDenied, []string{"offchain:write"}},
		{"foreign macaroon", rpcGetInfo,
			status.Error(codes.Unknown, "verification failed: signature mismatch after caveat verification"),
			ErrMacaroon, []string{"/lnd/ro.macaroon", "belongs to this node"}},
		{"unknown root key", rpcGetInfo,
			status.Error(codes.Unknown, "cannot get macaroon: root key with id 0 doesn't exist"),
			ErrMacaroon, nil},
		{"no macaroon sent", rpcGetInfo,
			status.Error(codes.Unknown, "expected 1 macaroon, got 0"),
			ErrMacaroon, nil},
		{"tls mismatch", rpcGetInfo,
			status.Error(codes.Unavailable, `connection error: desc = "transport: authentication handshake failed: tls: failed to verify certificate: x509: certificate signed by unknown authority"`),
			ErrTLSCert, []string{"/lnd/tls.cert"}},
		{"refused", rpcGetInfo,
			status.Error(codes.Unavailable, `connection error: desc = "transport: Error while dialing: dial tcp 127.0.0.1:10009: connect: connection refused"`),
			ErrUnreachable, []string{"is lnd running", "127.0.0.1:10009"}},
		{"deadline", rpcGetInfo, status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			context.DeadlineExceeded, nil},
		{"ctx canceled plain", rpcGetInfo, fmt.Errorf("x: %w", context.Canceled), context.Canceled, nil},
		{"invoice not found", rpcLookupInvoice,
			status.Error(codes.NotFound, "unable to locate invoice"), ErrInvoiceNotFound, nil},
		{"not found elsewhere", rpcGetInfo,
			status.Error(codes.NotFound, "unable to locate invoice"), nil, []string{"GetInfo", "NotFound"}},
		{"bad payreq", rpcDecodePayReq,
			status.Error(codes.Unknown, "invoice not for current active network 'regtest'"),
			ErrBadInvoice, []string{"regtest"}},
		{"expired", rpcSendPaymentV2,
			status.Error(codes.Unknown, "invoice expired. Valid until 2026-01-01 00:00:00 +0000 UTC"), ErrInvoiceExpired, []string{"new invoice"}},
		{"query no path", rpcQueryRoutes,
			status.Error(codes.Unknown, "unable to find a path to destination"), ErrNoRoute, nil},
		{"query no balance", rpcQueryRoutes,
			status.Error(codes.Unknown, "insufficient local balance"), ErrInsufficientBalance, nil},
		{"other", rpcAddInvoice, status.Error(codes.Internal, "boom"), nil, []string{"AddInvoice", "boom"}},
		{"not grpc", rpcAddInvoice, errors.New("plain"), nil, []string{"AddInvoice", "plain"}},
	}
	sentinels := []error{ErrInvoiceExpired, ErrNoRoute, ErrInsufficientBalance, ErrWalletLocked, ErrNotReady, ErrPermissionDenied, ErrMacaroon, ErrTLSCert,
		ErrUnreachable, ErrInvoiceNotFound, ErrBadInvoice, context.DeadlineExceeded, context.Canceled}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := classify(tc.method, cfg, tc.err)
			if tc.err == nil {
				if got != nil {
					t.Fatalf("classify(nil) = %v", got)
				}
				return
			}
			if got == nil {
				t.Fatal("classify returned nil for an error")
			}
			for _, s := range sentinels {
				if errors.Is(got, s) != (s == tc.want) {
					t.Errorf("errors.Is(%q, %v) = %v, want %v", got, s, !(s == tc.want), s == tc.want)
				}
			}
			for _, c := range tc.contains {
				if !strings.Contains(got.Error(), c) {
					t.Errorf("error %q lacks %q", got, c)
				}
			}
		})
	}
}

func TestPermissionForEveryRPC(t *testing.T) {
	t.Parallel()
	for _, m := range []string{rpcGetInfo, rpcAddInvoice, rpcLookupInvoice, rpcDecodePayReq,
		rpcSendPaymentV2, rpcTrackPaymentV2, rpcNewAddress, rpcConnectPeer, rpcOpenChannel,
		rpcListChannels, rpcChannelBalance, rpcWalletBalance, rpcQueryRoutes} {
		if permissionFor(m) == "" {
			t.Errorf("no permission listed for %s", m)
		}
	}
}
