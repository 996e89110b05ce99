package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/internal/regtest"
)

// TestPaymentsWaitThenLND: with a real regtest LND whose cert and
// macaroon the node cannot see at first, the node waits; once they are
// written where lnd.tlscertpath and lnd.macaroonpath point, it connects,
// starts its wallet and payment schedule, and status says ready. A paid
// path is then judged by the wallet (no vouchers held yet), no longer
// refused as "payments not ready".
func TestPaymentsWaitThenLND(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd and two lnd on regtest; run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	net, err := regtest.Start(ctx, regtest.Options{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("regtest.Start: %v", err)
	}
	t.Cleanup(func() { net.Close() })
	alice := net.Alice()

	creds := t.TempDir()
	c := waitConfig(t, creds, 10*time.Minute)
	c.LND.Host = alice.RPCHost
	var logs lockedBuffer
	n, err := New(c, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer n.Close()
	pollStatus(ctx, t, n, "waiting for lnd tls cert at "+c.LND.TLSCertPath)
	if n.Status().Client.Wallet != nil {
		t.Fatal("status shows a wallet before LND answered")
	}

	// "LND writes its files": the real ones, at the configured paths.
	copyTestFile(t, alice.TLSCertPath, c.LND.TLSCertPath)
	copyTestFile(t, alice.MacaroonPath, c.LND.MacaroonPath)
	pollStatus(ctx, t, n, "ready")
	if n.pay() == nil || n.pay().wallet == nil || n.payer() == nil {
		t.Fatal("status ready but no wallet or payment schedule")
	}
	if n.Status().Client.Wallet == nil {
		t.Fatal("status shows no wallet once payments are ready")
	}
	if !strings.Contains(logs.String(), "payments ready") {
		t.Errorf("log lacks payments ready:\n%s", logs.String())
	}
	paid := paidPath{ads: []discovery.Advert{{Payee: alice.Pubkey}, {Payee: alice.Pubkey}}, final: discovery.RoleExit}
	err = n.attachPrepay(make([]circuit.HopInfo, 2), &paid, false)
	if !errors.Is(err, errNotHeld) {
		t.Fatalf("paid path once ready: %v, want the wallet's errNotHeld", err)
	}
	select {
	case err := <-n.Fatal():
		t.Fatalf("Fatal after payments became ready: %v", err)
	default:
	}
}
