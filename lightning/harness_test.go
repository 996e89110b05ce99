package lightning_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/lightning"
)

// testWriter sends progress lines to the test log.
type testWriter struct{ tb testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startNetwork starts a regtest network for tb, closed at cleanup.
func startNetwork(tb testing.TB) *regtest.Network {
	tb.Helper()
	if testing.Short() {
		tb.Skip("skipping: starts btcd and two lnd on regtest (and builds them once, several minutes); run without -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	begin := time.Now()
	net, err := regtest.Start(ctx, regtest.Options{Dir: tb.TempDir(), Progress: testWriter{tb}})
	if err != nil {
		tb.Fatalf("regtest.Start: %v", err)
	}
	tb.Cleanup(func() {
		if err := net.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	tb.Logf("network up in %v", time.Since(begin).Round(time.Millisecond))
	return net
}

func dial(ctx context.Context, tb testing.TB, n regtest.NodeInfo) *lightning.Client {
	tb.Helper()
	c, err := lightning.Dial(ctx, n.LightningConfig(nil))
	if err != nil {
		tb.Fatalf("Dial %s: %v", n.Alias, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func TestHarnessPayment(t *testing.T) {
	net := startNetwork(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	alice := dial(ctx, t, net.Alice())
	bob := dial(ctx, t, net.Bob())

	if got := bob.Info().IdentityPubkey; got != net.Bob().Pubkey {
		t.Fatalf("Bob pubkey %s, harness says %s", got, net.Bob().Pubkey)
	}
	if chains := alice.Info().Chains; len(chains) != 1 || chains[0] != "bitcoin/regtest" {
		t.Fatalf("Alice chains = %v", chains)
	}
	bobBefore, err := bob.ChannelBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aliceBefore, err := alice.ChannelBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}

	payReq, hash, err := bob.CreateInvoice(ctx, 1000, "co-infuse test", time.Hour)
	if err != nil {
		t.Fatalf("CreateInvoice: %v", err)
	}
	inv, err := alice.DecodeInvoice(ctx, payReq)
	if err != nil {
		t.Fatalf("DecodeInvoice: %v", err)
	}
	if inv.Payee != net.Bob().Pubkey || inv.AmountSat != 1000 || inv.PayHash != hash || inv.Memo != "co-infuse test" {
		t.Fatalf("decoded %+v; want payee %s, 1000 sat, hash %x", inv, net.Bob().Pubkey, hash)
	}
	if d := time.Until(inv.Expiry); d < 50*time.Minute || d > 61*time.Minute {
		t.Fatalf("invoice expires in %v, want about 1h", d)
	}
	if settled, err := bob.InvoiceSettled(ctx, hash); err != nil || settled {
		t.Fatalf("InvoiceSettled before payment = %v, %v", settled, err)
	}

	begin := time.Now()
	pre, err := alice.PayInvoice(ctx, payReq, 10)
	if err != nil {
		t.Fatalf("PayInvoice: %v", err)
	}
	t.Logf("payment took %v", time.Since(begin).Round(time.Millisecond))
	if sha256.Sum256(pre[:]) != hash {
		t.Fatal("preimage does not hash to the payment hash")
	}
	if settled, err := bob.InvoiceSettled(ctx, hash); err != nil || !settled {
		t.Fatalf("InvoiceSettled after payment = %v, %v", settled, err)
	}
	bobAfter := waitBalance(ctx, t, bob, bobBefore.LocalSat+1000)
	aliceAfter, err := alice.ChannelBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if aliceAfter.LocalSat != aliceBefore.LocalSat-1000 {
		t.Fatalf("Alice local balance %d → %d, want -1000 (direct channel, no fee)", aliceBefore.LocalSat, aliceAfter.LocalSat)
	}

	// Paying again returns the same preimage and moves no money.
	pre2, err := alice.PayInvoice(ctx, payReq, 10)
	if err != nil {
		t.Fatalf("second PayInvoice: %v", err)
	}
	if pre2 != pre {
		t.Fatal("second PayInvoice returned a different preimage")
	}
	if b, err := alice.ChannelBalance(ctx); err != nil || b.LocalSat != aliceAfter.LocalSat {
		t.Fatalf("Alice balance after second pay = %+v, %v; want %d", b, err, aliceAfter.LocalSat)
	}
	if b, err := bob.ChannelBalance(ctx); err != nil || b.LocalSat != bobAfter.LocalSat {
		t.Fatalf("Bob balance after second pay = %+v, %v; want %d", b, err, bobAfter.LocalSat)
	}

	t.Run("cases", func(t *testing.T) {
		harnessCases(ctx, t, net, alice, bob)
	})
}

// waitBalance polls until c's local channel balance reaches want; the payee
// may update its balance a moment after the payer sees success.
func waitBalance(ctx context.Context, t *testing.T, c *lightning.Client, want int64) lightning.Balance {
	t.Helper()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := c.ChannelBalance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if b.LocalSat == want {
			return b
		}
		if b.LocalSat > want {
			t.Fatalf("balance %d overshoots %d", b.LocalSat, want)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("balance stuck at %d, want %d", b.LocalSat, want)
		case <-tick.C:
		}
	}
}

// harnessCases checks concurrent payment and error classification against
// real lnd answers.
func harnessCases(ctx context.Context, t *testing.T, net *regtest.Network, alice, bob *lightning.Client) {
	macDir := func(n regtest.NodeInfo, name string) string {
		return strings.TrimSuffix(n.MacaroonPath, "admin.macaroon") + name
	}
	t.Run("decode garbage", func(t *testing.T) {
		t.Parallel()
		_, err := alice.DecodeInvoice(ctx, "lnbcrt1garbage")
		if !errors.Is(err, lightning.ErrBadInvoice) {
			t.Fatalf("DecodeInvoice(garbage) = %v, want ErrBadInvoice", err)
		}
		t.Log(err)
	})
	t.Run("unknown invoice", func(t *testing.T) {
		t.Parallel()
		_, err := bob.InvoiceSettled(ctx, [32]byte{1})
		if !errors.Is(err, lightning.ErrInvoiceNotFound) {
			t.Fatalf("InvoiceSettled(unknown) = %v, want ErrInvoiceNotFound", err)
		}
		t.Log(err)
	})
	t.Run("too large", func(t *testing.T) {
		t.Parallel()
		payReq, _, err := bob.CreateInvoice(ctx, 5_000_000, "too much", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, err = alice.PayInvoice(ctx, payReq, 10)
		if !errors.Is(err, lightning.ErrNoRoute) && !errors.Is(err, lightning.ErrInsufficientBalance) {
			t.Fatalf("PayInvoice(5M sat over a 1M channel) = %v, want ErrNoRoute or ErrInsufficientBalance", err)
		}
		t.Log(err)
	})
	t.Run("concurrent pay once", func(t *testing.T) {
		t.Parallel()
		before, err := bob.ChannelBalance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		payReq, hash, err := bob.CreateInvoice(ctx, 2000, "race", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		const payers = 3
		type result struct {
			pre [32]byte
			err error
		}
		results := make(chan result, payers) // one per payer goroutine
		for range payers {
			go func() {
				pre, err := alice.PayInvoice(ctx, payReq, 10)
				results <- result{pre, err}
			}()
		}
		for range payers {
			r := <-results
			if r.err != nil {
				t.Errorf("concurrent PayInvoice: %v", r.err)
				continue
			}
			if sha256.Sum256(r.pre[:]) != hash {
				t.Error("concurrent PayInvoice returned a wrong preimage")
			}
		}
		waitBalance(ctx, t, bob, before.LocalSat+2000)
	})
	t.Run("expired", func(t *testing.T) {
		t.Parallel()
		payReq, _, err := bob.CreateInvoice(ctx, 1, "short", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		inv, err := alice.DecodeInvoice(ctx, payReq)
		if err != nil {
			t.Fatal(err)
		}
		// Wait for the expiry to pass on the wall clock LND checks.
		timer := time.NewTimer(time.Until(inv.Expiry) + 1100*time.Millisecond)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-timer.C:
		}
		_, err = alice.PayInvoice(ctx, payReq, 10)
		if !errors.Is(err, lightning.ErrInvoiceExpired) {
			t.Fatalf("PayInvoice(expired) = %v, want ErrInvoiceExpired", err)
		}
		t.Log(err)
	})
	t.Run("readonly macaroon", func(t *testing.T) {
		t.Parallel()
		cfg := net.Bob().LightningConfig(nil)
		cfg.MacaroonPath = macDir(net.Bob(), "readonly.macaroon")
		c, err := lightning.Dial(ctx, cfg)
		if err != nil {
			t.Fatalf("Dial with readonly.macaroon: %v", err)
		}
		defer c.Close()
		_, _, err = c.CreateInvoice(ctx, 1, "x", time.Minute)
		if !errors.Is(err, lightning.ErrPermissionDenied) || !strings.Contains(err.Error(), "invoices:write") {
			t.Fatalf("CreateInvoice with readonly.macaroon = %v, want ErrPermissionDenied naming invoices:write", err)
		}
		t.Log(err)
	})
	t.Run("invoice macaroon cannot get info", func(t *testing.T) {
		t.Parallel()
		cfg := net.Bob().LightningConfig(nil)
		cfg.MacaroonPath = macDir(net.Bob(), "invoice.macaroon")
		_, err := lightning.Dial(ctx, cfg)
		if !errors.Is(err, lightning.ErrPermissionDenied) || !strings.Contains(err.Error(), "info:read") {
			t.Fatalf("Dial with invoice.macaroon = %v, want ErrPermissionDenied naming info:read", err)
		}
		t.Log(err)
	})
	t.Run("foreign macaroon", func(t *testing.T) {
		t.Parallel()
		cfg := net.Bob().LightningConfig(nil)
		cfg.MacaroonPath = net.Alice().MacaroonPath
		_, err := lightning.Dial(ctx, cfg)
		if !errors.Is(err, lightning.ErrMacaroon) {
			t.Fatalf("Dial Bob with Alice's macaroon = %v, want ErrMacaroon", err)
		}
		t.Log(err)
	})
	t.Run("foreign cert", func(t *testing.T) {
		t.Parallel()
		cfg := net.Bob().LightningConfig(nil)
		cfg.TLSCertPath = net.Alice().TLSCertPath
		_, err := lightning.Dial(ctx, cfg)
		if !errors.Is(err, lightning.ErrTLSCert) {
			t.Fatalf("Dial Bob with Alice's cert = %v, want ErrTLSCert", err)
		}
		t.Log(err)
	})
}

// BenchmarkHarnessPayment measures one voucher-sized purchase over a direct
// channel on regtest: Bob creates a 1000 sat invoice, Alice decodes and pays
// it, Bob sees it settled.
func BenchmarkHarnessPayment(b *testing.B) {
	net := startNetwork(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	alice := dial(ctx, b, net.Alice())
	bob := dial(ctx, b, net.Bob())
	for b.Loop() {
		payReq, hash, err := bob.CreateInvoice(ctx, 1000, "bench", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := alice.DecodeInvoice(ctx, payReq); err != nil {
			b.Fatal(err)
		}
		if _, err := alice.PayInvoice(ctx, payReq, 10); err != nil {
			b.Fatal(err)
		}
		if ok, err := bob.InvoiceSettled(ctx, hash); err != nil || !ok {
			b.Fatalf("settled = %v, %v", ok, err)
		}
	}
}
