package lightning

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// fakeLnd is a loopback gRPC server with LND's GetInfo, answering with a
// canned error or a canned node, and recording the macaroon header it saw.
type fakeLnd struct {
	lnrpc.UnimplementedLightningServer
	err error // returned by GetInfo when set

	mu       sync.Mutex
	macaroon string // last "macaroon" header; guarded by mu
}

func (f *fakeLnd) GetInfo(ctx context.Context, _ *lnrpc.GetInfoRequest) (*lnrpc.GetInfoResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	if v := md.Get("macaroon"); len(v) == 1 {
		f.macaroon = v[0]
	}
	f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return &lnrpc.GetInfoResponse{
		IdentityPubkey: "02" + strings.Repeat("11", 32),
		Alias:          "fake",
		SyncedToChain:  true,
		Chains:         []*lnrpc.Chain{{Chain: "bitcoin", Network: "regtest"}},
	}, nil
}

// startFake serves f over TLS on 127.0.0.1 and returns a Config for it.
func startFake(t *testing.T, f *fakeLnd) Config {
	t.Helper()
	dir := t.TempDir()
	certPath, cert := writeCertKey(t, dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewServerTLSFromCert(&cert)))
	lnrpc.RegisterLightningServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return Config{Host: l.Addr().String(), TLSCertPath: certPath, MacaroonPath: writeMacaroon(t, dir)}
}

func TestDialFakeLnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want error
	}{
		{"ok", nil, nil},
		{"wallet locked", status.Error(codes.Unknown, "wallet locked, unlock it to enable full RPC access"), ErrWalletLocked},
		{"starting", status.Error(codes.Unknown, "the RPC server is in the process of starting up, but not yet ready to accept calls"), ErrNotReady},
		{"no permission", status.Error(codes.Unknown, "permission denied"), ErrPermissionDenied},
		{"bad macaroon", status.Error(codes.Unknown, "verification failed: signature mismatch after caveat verification"), ErrMacaroon},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeLnd{err: tc.err}
			cfg := startFake(t, f)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := Dial(ctx, cfg)
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("Dial = %v, want %v", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			info := c.Info()
			if info.Alias != "fake" || !info.SyncedToChain || len(info.Chains) != 1 || info.Chains[0] != "bitcoin/regtest" {
				t.Fatalf("Info() = %+v", info)
			}
			raw, err := os.ReadFile(cfg.MacaroonPath)
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			gotMac := f.macaroon
			f.mu.Unlock()
			if gotMac != hex.EncodeToString(raw) {
				t.Fatalf("server saw macaroon header %q, want the file's hex", gotMac)
			}
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			if err := c.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := c.GetInfo(ctx); !errors.Is(err, ErrClosed) {
				t.Fatalf("GetInfo after Close = %v, want ErrClosed", err)
			}
		})
	}
}

func TestDialWrongCert(t *testing.T) {
	t.Parallel()
	cfg := startFake(t, &fakeLnd{})
	// A certificate the server does not hold.
	cfg.TLSCertPath = writeCert(t, t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Dial(ctx, cfg)
	if !errors.Is(err, ErrTLSCert) || !strings.Contains(err.Error(), cfg.TLSCertPath) {
		t.Fatalf("Dial with the wrong cert = %v, want ErrTLSCert naming %s", err, cfg.TLSCertPath)
	}
}
