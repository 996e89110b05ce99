package devnet

// TestE2EVoucherLightning buys vouchers against real Lightning: one regtest
// network (btcd, Alice's lnd for the client, Bob's lnd for the node), a mint
// host on Bob's side and a wallet host on Alice's, both libp2p hosts on
// 127.0.0.1. The subtests run in order on that one network, each measuring
// channel balances around its own payments:
//
//	PurchaseEndToEnd                  Buy 500: vouchers verify, Bob +500, Alice −500
//	DoubleSpendRefusedAfterRestart    redeem, reopen the mint's store, ErrSpent
//	CrashAfterPaymentResumesOnce      paid but unrecorded; Resume in a new wallet
//	                                  on a new host (a client-only node's next run)
//	DailyBudgetCap                    second Buy refused before any payment
//	CrashBeforeSignaturesStoredResumesOnce  client killed while the node signs;
//	                                  resumed on a new host too
//	NodeRestartBetweenPaymentAndSigning     node down after the payment
//	ConcurrentBuysShareOneBudget      three racers, room for two
//	PaidQuotesFreeTheirOpenSlot       six paid purchases in a row from one node
//	PurchaseLatency                   quote to usable vouchers, 8 payments
//	TamperedInvoiceRefused            invoice for more than the quote: no payment

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/lightning"
	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/mint"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// lnEnv is the shared regtest network and the two hosts.
type lnEnv struct {
	alice, bob *lightning.Client
	bobPubkey  string
	mintHost   host.Host
	walletHost host.Host
	log        *slog.Logger
}

func lnTestHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
	)
	if err != nil {
		t.Fatalf("libp2p host: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// newLNMint opens a mint on Bob's LND at path, as node wires it. tweak,
// if non-nil, edits the config first (to wrap Bob's CreateInvoice or
// InvoiceSettled, tampering with invoices or injecting a crash).
func (e *lnEnv) newLNMint(t *testing.T, path string, tweak func(*mint.Config)) *mint.Mint {
	t.Helper()
	payee, err := mint.PayeeFromHex(e.bobPubkey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := mint.Config{
		Host:           e.mintHost,
		Path:           path,
		CreateInvoice:  e.bob.CreateInvoice,
		InvoiceSettled: e.bob.InvoiceSettled,
		Payee:          payee,
		PriceMsatPerMB: 1000,
		Logger:         e.log,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	m, err := mint.New(cfg)
	if err != nil {
		t.Fatalf("mint.New: %v", err)
	}
	if err := m.Start(); err != nil {
		t.Fatalf("mint.Start: %v", err)
	}
	return m
}

// payCounter wraps Alice's PayInvoice: it counts calls and, while
// failAfterPay is set, lets the real payment go through and then reports
// an error, as if the client crashed before it could record the payment.
// afterPay, if set, runs after each successful payment.
type payCounter struct {
	lnd          *lightning.Client
	calls        atomic.Int32
	failAfterPay atomic.Bool
	afterPay     func()
}

var errCrashAfterPay = errors.New("test: crash after the payment went through")

func (p *payCounter) pay(ctx context.Context, payReq string, feeLimitSat int64) ([32]byte, error) {
	p.calls.Add(1)
	pre, err := p.lnd.PayInvoice(ctx, payReq, feeLimitSat)
	if err == nil && p.afterPay != nil {
		p.afterPay()
	}
	if err == nil && p.failAfterPay.Load() {
		return [32]byte{}, errCrashAfterPay
	}
	return pre, err
}

// newLNWallet opens a wallet on Alice's LND at path that buys from m.
// AutoBuy is off; the caller Starts it or calls Resume.
func (e *lnEnv) newLNWallet(t *testing.T, path string, m func() *mint.Mint, pc *payCounter, budget uint64) *wallet.Wallet {
	t.Helper()
	return e.newLNWalletOn(t, e.walletHost, path, m, pc, budget)
}

// restartedHost is a new wallet host connected to the mint: a client-only
// node's next run, with another peer ID than the run that bought.
func (e *lnEnv) restartedHost(ctx context.Context, t *testing.T) host.Host {
	t.Helper()
	h := lnTestHost(t)
	if err := h.Connect(ctx, peer.AddrInfo{ID: e.mintHost.ID(), Addrs: e.mintHost.Addrs()}); err != nil {
		t.Fatalf("connect restarted wallet host to mint host: %v", err)
	}
	return h
}

// newLNWalletOn is newLNWallet on host h.
func (e *lnEnv) newLNWalletOn(t *testing.T, h host.Host, path string, m func() *mint.Mint, pc *payCounter, budget uint64) *wallet.Wallet {
	t.Helper()
	w, err := wallet.New(wallet.Config{
		Host: h,
		Path: path,
		DecodeInvoice: func(ctx context.Context, pr string) (wallet.Invoice, error) {
			inv, err := e.alice.DecodeInvoice(ctx, pr)
			return wallet.Invoice{AmountSat: inv.AmountSat, AmountMsat: inv.AmountMsat,
				Payee: inv.Payee, PayHash: inv.PayHash, Expiry: inv.Expiry}, err
		},
		PayInvoice: pc.pay,
		Published: func(ctx context.Context, node peer.ID) (wallet.Published, error) {
			return wallet.Published{Payee: e.bobPubkey, Keysets: m().Keysets(), PriceMsatPerMB: 1000}, nil
		},
		DailyBudgetSat:   budget,
		TargetBalanceSat: min(budget, 500),
		Logger:           e.log,
	})
	if err != nil {
		t.Fatalf("wallet.New: %v", err)
	}
	return w
}

// localSat is a node's spendable channel balance.
func localSat(ctx context.Context, t *testing.T, c *lightning.Client) int64 {
	t.Helper()
	b, err := c.ChannelBalance(ctx)
	if err != nil {
		t.Fatalf("ChannelBalance: %v", err)
	}
	return b.LocalSat
}

// waitLocal polls c's local balance until it equals want (the commitment
// update after a settled HTLC may trail the payment result) and returns the
// last value seen, so a mismatch is reported with the real figure.
func waitLocal(ctx context.Context, t *testing.T, c *lightning.Client, want int64) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	var got int64
	_ = poll(ctx, func() bool {
		got = localSat(ctx, t, c)
		return got == want
	})
	return got
}

// checkResumedOnce asserts the outcome every crash-and-resume case must
// reach: w holds exactly amount of node's vouchers, all valid and distinct,
// no more; m redeems them for amount; and Alice paid Bob amount exactly once
// since the balances alice0 and bob0.
func (e *lnEnv) checkResumedOnce(ctx context.Context, t *testing.T, w *wallet.Wallet, m *mint.Mint, node peer.ID, amount uint64, alice0, bob0 int64) {
	t.Helper()
	bal, err := w.Balances()
	if err != nil {
		t.Fatal(err)
	}
	if got := bal[node]; got.Available != amount || got.Pending != 0 || got.Reserved != 0 {
		t.Fatalf("balance after Resume = %+v, want exactly %d available", got, amount)
	}
	vs, err := w.Reserve(node, amount)
	if err != nil {
		t.Fatalf("Reserve(%d): %v", amount, err)
	}
	if sum := checkVouchers(t, m, vs); sum != amount {
		t.Errorf("vouchers after Resume sum to %d, want %d", sum, amount)
	}
	if _, err := w.Reserve(node, 1); !errors.Is(err, wallet.ErrInsufficient) {
		t.Errorf("Reserve(1) beyond the resumed vouchers: %v, want ErrInsufficient", err)
	}
	if c, err := m.Redeem(ctx, vs); err != nil || c != amount {
		t.Errorf("Redeem resumed vouchers = %d, %v; want %d, nil", c, err, amount)
	}
	if got := waitLocal(ctx, t, e.alice, alice0-int64(amount)); got != alice0-int64(amount) {
		t.Errorf("Alice's channel balance %d → %d, want −%d exactly once", alice0, got, amount)
	}
	if got := waitLocal(ctx, t, e.bob, bob0+int64(amount)); got != bob0+int64(amount) {
		t.Errorf("Bob's channel balance %d → %d, want +%d exactly once", bob0, got, amount)
	}
}

// checkVouchers verifies vs against the mint's keysets and returns their sum.
func checkVouchers(t *testing.T, m *mint.Mint, vs []voucher.Voucher) uint64 {
	t.Helper()
	var sum uint64
	seen := map[[32]byte]bool{}
	for i := range vs {
		v := &vs[i]
		ok := false
		for _, ks := range m.Keysets() {
			if ks.ID() == v.Keyset {
				if err := ks.Verify(v, time.Now()); err != nil {
					t.Errorf("voucher %d (%d sats): %v", i, v.Amount, err)
				}
				ok = true
			}
		}
		if !ok {
			t.Errorf("voucher %d: keyset %s not published by the mint", i, v.Keyset)
		}
		if id := v.SpendID(); seen[id] {
			t.Errorf("voucher %d appears twice", i)
		} else {
			seen[id] = true
		}
		sum += v.Amount
	}
	return sum
}

func TestE2EVoucherLightning(t *testing.T) {
	skipShort(t)
	t.Parallel() // its own regtest network; the subtests below run in order
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if lv := os.Getenv("E2E_LOG"); lv != "" {
		logger = node.NewLogger(os.Stderr, lv)
	}
	start := time.Now()
	ln, err := regtest.Start(ctx, regtest.Options{Dir: filepath.Join(t.TempDir(), "regtest"), Logger: logger})
	if err != nil {
		t.Fatalf("regtest network: %v", err)
	}
	t.Cleanup(func() {
		if err := ln.Close(); err != nil {
			t.Errorf("regtest close: %v", err)
		}
	})
	t.Logf("regtest network up in %v", time.Since(start).Round(time.Millisecond))

	dial := func(info regtest.NodeInfo) *lightning.Client {
		c, err := lightning.Dial(ctx, info.LightningConfig(logger))
		if err != nil {
			t.Fatalf("dial %s: %v", info.Alias, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	e := &lnEnv{
		alice:     dial(ln.Alice()),
		bob:       dial(ln.Bob()),
		bobPubkey: ln.Bob().Pubkey,
		log:       logger,
	}
	e.mintHost = lnTestHost(t)
	e.walletHost = lnTestHost(t)
	if err := e.walletHost.Connect(ctx, peer.AddrInfo{ID: e.mintHost.ID(), Addrs: e.mintHost.Addrs()}); err != nil {
		t.Fatalf("connect wallet host to mint host: %v", err)
	}
	node := e.mintHost.ID()
	dir := t.TempDir()

	// The mint of subtests 1–4, reopened on the same store in 2.
	mintPath := filepath.Join(dir, "mint.db")
	var m atomic.Pointer[mint.Mint]
	m.Store(e.newLNMint(t, mintPath, nil))
	t.Cleanup(func() { m.Load().Stop() })
	curMint := func() *mint.Mint { return m.Load() }

	const amount = 500
	var bought []voucher.Voucher // from subtest 1, redeemed in 2

	t.Run("PurchaseEndToEnd", func(t *testing.T) {
		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, filepath.Join(dir, "w1.db"), curMint, pc, 10000)
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		alice0, bob0 := localSat(ctx, t, e.alice), localSat(ctx, t, e.bob)

		began := time.Now()
		p, err := w.Buy(ctx, node, amount)
		if err != nil {
			t.Fatalf("Buy(%d): %v", amount, err)
		}
		bal, err := w.Balances()
		latency := time.Since(began)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("purchase latency (quote to usable vouchers, one real Lightning payment): %v; purchase %+v", latency.Round(time.Millisecond), p)
		if got := bal[node]; got.Available != amount || got.Pending != 0 {
			t.Fatalf("balance after Buy(%d) = %+v, want %d available, 0 pending", amount, got, amount)
		}
		if n := pc.calls.Load(); n != 1 {
			t.Errorf("PayInvoice called %d times, want 1", n)
		}
		vs, err := w.Reserve(node, amount)
		if err != nil {
			t.Fatalf("Reserve(%d): %v", amount, err)
		}
		if sum := checkVouchers(t, curMint(), vs); sum != amount {
			t.Errorf("reserved vouchers sum to %d, want %d", sum, amount)
		}
		bought = vs

		if got := waitLocal(ctx, t, e.bob, bob0+amount); got != bob0+amount {
			t.Errorf("Bob's channel balance %d → %d, want +%d", bob0, got, amount)
		}
		got := waitLocal(ctx, t, e.alice, alice0-amount) // direct channel: no routing fee
		// The wallet's default fee limit: max(10 sats, 1 %).
		const feeLimit = 10
		if alice0-got < amount || alice0-got > amount+feeLimit {
			t.Errorf("Alice's channel balance %d → %d, want −%d (+ at most %d fee)", alice0, got, amount, feeLimit)
		}
		if p.State != wallet.PurchaseDone || p.AmountSat != amount {
			t.Errorf("purchase %+v, want done for %d sats", p, amount)
		}
		if err := w.MarkSpent(vs); err != nil {
			t.Errorf("MarkSpent: %v", err)
		}
	})

	t.Run("DoubleSpendRefusedAfterRestart", func(t *testing.T) {
		if len(bought) == 0 {
			t.Skip("no vouchers from the purchase subtest")
		}
		credited, err := curMint().Redeem(ctx, bought)
		if err != nil || credited != amount {
			t.Fatalf("first Redeem = %d, %v; want %d, nil", credited, err, amount)
		}
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		m.Store(e.newLNMint(t, mintPath, nil))
		credited, err = curMint().Redeem(ctx, bought)
		if !errors.Is(err, voucher.ErrSpent) {
			t.Fatalf("Redeem after restart: err %v, want voucher.ErrSpent", err)
		}
		if credited != 0 {
			t.Errorf("Redeem after restart credited %d sats, want 0", credited)
		}
		// Each one alone is refused too, not only the batch.
		for i := range bought {
			if c, err := curMint().Redeem(ctx, bought[i:i+1]); c != 0 || !errors.Is(err, voucher.ErrSpent) {
				t.Errorf("voucher %d alone: credited %d, err %v; want 0, ErrSpent", i, c, err)
			}
		}
	})

	t.Run("CrashAfterPaymentResumesOnce", func(t *testing.T) {
		path := filepath.Join(dir, "w3.db")
		pc := &payCounter{lnd: e.alice}
		pc.failAfterPay.Store(true)
		w := e.newLNWallet(t, path, curMint, pc, 10000)
		alice0, bob0 := localSat(ctx, t, e.alice), localSat(ctx, t, e.bob)

		_, err := w.Buy(ctx, node, amount)
		if !errors.Is(err, wallet.ErrPayment) || !strings.Contains(err.Error(), errCrashAfterPay.Error()) {
			t.Fatalf("Buy with a crash after payment: %v, want ErrPayment", err)
		}
		if bal, err := w.Balances(); err != nil || bal[node].Available != 0 || bal[node].Pending != amount {
			t.Fatalf("balance after the crash = %+v, %v; want 0 available, %d pending", bal[node], err, amount)
		}
		if err := w.Stop(); err != nil {
			t.Fatalf("wallet Stop: %v", err)
		}
		// The payment really happened, once.
		if got := waitLocal(ctx, t, e.bob, bob0+amount); got != bob0+amount {
			t.Fatalf("Bob's channel balance %d → %d after the crashed purchase, want +%d", bob0, got, amount)
		}

		// The client comes back as a new run with another peer ID: the
		// paid quote is still signed for it.
		pc2 := &payCounter{lnd: e.alice}
		w2 := e.newLNWalletOn(t, e.restartedHost(ctx, t), path, curMint, pc2, 10000)
		defer w2.Stop()
		if err := w2.Resume(ctx); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		t.Logf("Resume asked LND to pay %d time(s); LND followed the existing payment", pc2.calls.Load())
		e.checkResumedOnce(ctx, t, w2, curMint(), node, amount, alice0, bob0)
	})

	t.Run("DailyBudgetCap", func(t *testing.T) {
		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, filepath.Join(dir, "w4.db"), curMint, pc, 700)
		defer w.Stop()
		alice0, bob0 := localSat(ctx, t, e.alice), localSat(ctx, t, e.bob)
		if _, err := w.Buy(ctx, node, amount); err != nil {
			t.Fatalf("first Buy(%d) under a 700-sat budget: %v", amount, err)
		}
		alice1 := waitLocal(ctx, t, e.alice, alice0-amount)
		if alice1 != alice0-amount {
			t.Errorf("Alice's channel balance %d → %d after the first purchase, want −%d", alice0, alice1, amount)
		}
		if got := waitLocal(ctx, t, e.bob, bob0+amount); got != bob0+amount {
			t.Errorf("Bob's channel balance %d → %d after the first purchase, want +%d", bob0, got, amount)
		}
		_, err := w.Buy(ctx, node, amount)
		if !errors.Is(err, wallet.ErrBudget) {
			t.Fatalf("second Buy(%d) under a 700-sat budget: %v, want ErrBudget", amount, err)
		}
		if n := pc.calls.Load(); n != 1 {
			t.Errorf("PayInvoice called %d times, want 1 (the refused purchase must not pay)", n)
		}
		if used, limit, err := w.BudgetUsed(); err != nil || used > limit || used < amount {
			t.Errorf("BudgetUsed = %d of %d, %v", used, limit, err)
		}
		if got := localSat(ctx, t, e.alice); got != alice1 {
			t.Errorf("Alice's channel balance moved %d → %d on a refused purchase", alice1, got)
		}
		if bal, err := w.Balances(); err != nil || bal[node].Available != amount || bal[node].Pending != 0 {
			t.Errorf("balance = %+v, %v; want %d available", bal[node], err, amount)
		}
	})

	t.Run("CrashBeforeSignaturesStoredResumesOnce", func(t *testing.T) {
		// The client dies while the node is signing: the payment is
		// recorded, the mint request is out, the answer never arrives.
		// A mint whose invoice check kills the client's Buy (cancels its
		// context and waits for it to return) before answering "settled".
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		buyCtx, killClient := context.WithCancel(ctx)
		defer killClient()
		buyDone := make(chan struct{})
		var armed atomic.Bool
		armed.Store(true)
		settled := func(sctx context.Context, h [32]byte) (bool, error) {
			ok, err := e.bob.InvoiceSettled(sctx, h)
			if ok && err == nil && armed.CompareAndSwap(true, false) {
				killClient()
				select {
				case <-buyDone:
				case <-sctx.Done():
					return false, sctx.Err()
				}
			}
			return ok, err
		}
		m.Store(e.newLNMint(t, mintPath, func(c *mint.Config) { c.InvoiceSettled = settled }))

		path := filepath.Join(dir, "w6.db")
		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, path, curMint, pc, 10000)
		alice0, bob0 := localSat(ctx, t, e.alice), localSat(ctx, t, e.bob)
		_, buyErr := w.Buy(buyCtx, node, amount)
		close(buyDone)
		if buyErr == nil {
			t.Fatal("Buy succeeded though the client was killed before the node answered")
		}
		if armed.Load() {
			t.Fatalf("the node never saw the payment settled: Buy: %v", buyErr)
		}
		t.Logf("killed Buy: %v", buyErr)
		if bal, err := w.Balances(); err != nil || bal[node].Available != 0 || bal[node].Pending != amount {
			t.Fatalf("balance after the crash = %+v, %v; want 0 available, %d pending (Buy: %v)", bal[node], err, amount, buyErr)
		}
		if err := w.Stop(); err != nil {
			t.Fatalf("wallet Stop: %v", err)
		}

		pc2 := &payCounter{lnd: e.alice}
		w2 := e.newLNWalletOn(t, e.restartedHost(ctx, t), path, curMint, pc2, 10000)
		defer w2.Stop()
		if err := w2.Resume(ctx); err != nil {
			t.Fatalf("Resume: %v", err)
		}
		if n := pc2.calls.Load(); n != 0 {
			t.Errorf("Resume of a recorded payment called PayInvoice %d times, want 0", n)
		}
		e.checkResumedOnce(ctx, t, w2, curMint(), node, amount, alice0, bob0)
	})

	t.Run("NodeRestartBetweenPaymentAndSigning", func(t *testing.T) {
		// The node goes down right after the client paid, before the
		// client asks for signatures; it comes back on the same store and
		// the client's Resume gets the vouchers it paid for, once.
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		m.Store(e.newLNMint(t, mintPath, nil))
		var stopErr error
		var stops atomic.Int32
		pc := &payCounter{lnd: e.alice}
		pc.afterPay = func() {
			if stops.Add(1) == 1 {
				stopErr = curMint().Stop()
			}
		}
		w := e.newLNWallet(t, filepath.Join(dir, "w7.db"), curMint, pc, 10000)
		defer w.Stop()
		alice0, bob0 := localSat(ctx, t, e.alice), localSat(ctx, t, e.bob)
		_, buyErr := w.Buy(ctx, node, amount)
		if stopErr != nil {
			t.Fatalf("mint Stop after the payment: %v", stopErr)
		}
		if buyErr == nil || stops.Load() != 1 {
			t.Fatalf("Buy from a node that went down after the payment: %v (node stopped %d times), want an error", buyErr, stops.Load())
		}
		t.Logf("Buy while the node is down: %v", buyErr)
		if bal, err := w.Balances(); err != nil || bal[node].Available != 0 || bal[node].Pending != amount {
			t.Fatalf("balance with the node down = %+v, %v; want %d pending", bal[node], err, amount)
		}

		m.Store(e.newLNMint(t, mintPath, nil))
		if err := w.Resume(ctx); err != nil {
			t.Fatalf("Resume after the node came back: %v", err)
		}
		if n := pc.calls.Load(); n != 1 {
			t.Errorf("PayInvoice called %d times, want 1", n)
		}
		e.checkResumedOnce(ctx, t, w, curMint(), node, amount, alice0, bob0)
	})

	t.Run("ConcurrentBuysShareOneBudget", func(t *testing.T) {
		// Three purchases race for a budget that holds two (500 + 10 fee
		// limit each, 1100 allowed): exactly two pay.
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		m.Store(e.newLNMint(t, mintPath, nil))
		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, filepath.Join(dir, "w8.db"), curMint, pc, 1100)
		defer w.Stop()
		alice0, bob0 := localSat(ctx, t, e.alice), localSat(ctx, t, e.bob)
		const racers = 3
		errs := make(chan error, racers)
		var wg sync.WaitGroup
		for range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := w.Buy(ctx, node, amount)
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		var ok, refused int
		for err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, wallet.ErrBudget):
				refused++
			default:
				t.Errorf("concurrent Buy: %v", err)
			}
		}
		if ok != 2 || refused != 1 {
			t.Fatalf("%d purchases succeeded and %d were refused for budget, want 2 and 1", ok, refused)
		}
		if n := pc.calls.Load(); n != 2 {
			t.Errorf("PayInvoice called %d times, want 2", n)
		}
		if bal, err := w.Balances(); err != nil || bal[node].Available != 2*amount || bal[node].Pending != 0 {
			t.Errorf("balance = %+v, %v; want %d available", bal[node], err, 2*amount)
		}
		if got := waitLocal(ctx, t, e.alice, alice0-2*amount); got != alice0-2*amount {
			t.Errorf("Alice's channel balance %d → %d, want −%d", alice0, got, 2*amount)
		}
		if got := waitLocal(ctx, t, e.bob, bob0+2*amount); got != bob0+2*amount {
			t.Errorf("Bob's channel balance %d → %d, want +%d", bob0, got, 2*amount)
		}
	})

	t.Run("PaidQuotesFreeTheirOpenSlot", func(t *testing.T) {
		// MaxOpenQuotesPerPeer (default 4) caps a peer's unexpired
		// *unpaid* quotes. Quotes that were paid and signed must not
		// count, or a client may buy only 4 times per invoice expiry
		// (10 min) from one node, however promptly it pays.
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		m.Store(e.newLNMint(t, mintPath, nil))
		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, filepath.Join(dir, "w10.db"), curMint, pc, 10000)
		defer w.Stop()
		const rounds, sats = 6, 50
		for i := range rounds {
			if _, err := w.Buy(ctx, node, sats); err != nil {
				t.Fatalf("paid purchase %d of %d in a row from one node (none left open): %v", i+1, rounds, err)
			}
		}
		if bal, err := w.Balances(); err != nil || bal[node].Available != rounds*sats {
			t.Errorf("balance = %+v, %v; want %d available", bal[node], err, rounds*sats)
		}
	})

	t.Run("PurchaseLatency", func(t *testing.T) {
		// Quote to usable vouchers, one real Lightning payment each, over
		// a warm libp2p connection and LND channel.
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		// Room for every purchase (see PaidQuotesFreeTheirOpenSlot).
		m.Store(e.newLNMint(t, mintPath, func(c *mint.Config) { c.MaxOpenQuotesPerPeer = 64 }))
		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, filepath.Join(dir, "w9.db"), curMint, pc, 10000)
		defer w.Stop()
		const rounds, sats = 8, 100
		lat := make([]time.Duration, 0, rounds)
		for i := range rounds {
			began := time.Now()
			if _, err := w.Buy(ctx, node, sats); err != nil {
				t.Fatalf("Buy %d: %v", i, err)
			}
			lat = append(lat, time.Since(began))
		}
		if bal, err := w.Balances(); err != nil || bal[node].Available != rounds*sats {
			t.Fatalf("balance = %+v, %v; want %d available", bal[node], err, rounds*sats)
		}
		slices.Sort(lat)
		t.Logf("purchase latency over %d purchases of %d sats: min %v, median %v, max %v",
			rounds, sats, lat[0].Round(time.Millisecond), lat[rounds/2].Round(time.Millisecond), lat[rounds-1].Round(time.Millisecond))
	})

	t.Run("TamperedInvoiceRefused", func(t *testing.T) {
		// A node whose mint quotes 500 sats but invoices 501 (it shares
		// the mint host, so the quote and the advert are otherwise good).
		if err := curMint().Stop(); err != nil {
			t.Fatalf("mint Stop: %v", err)
		}
		var invoiced atomic.Int64
		greedy := func(ctx context.Context, amtSat int64, memo string, expiry time.Duration) (string, [32]byte, error) {
			invoiced.Store(amtSat + 1)
			return e.bob.CreateInvoice(ctx, amtSat+1, memo, expiry)
		}
		m.Store(e.newLNMint(t, filepath.Join(dir, "greedy-mint.db"), func(c *mint.Config) { c.CreateInvoice = greedy }))

		pc := &payCounter{lnd: e.alice}
		w := e.newLNWallet(t, filepath.Join(dir, "w5.db"), curMint, pc, 10000)
		defer w.Stop()
		alice0 := localSat(ctx, t, e.alice)
		_, err := w.Buy(ctx, node, amount)
		if !errors.Is(err, wallet.ErrInvoiceMismatch) {
			t.Fatalf("Buy(%d) from a mint invoicing %d: %v, want ErrInvoiceMismatch", amount, invoiced.Load(), err)
		}
		if invoiced.Load() != amount+1 {
			t.Fatalf("the tampering mint was not asked for an invoice (invoiced %d)", invoiced.Load())
		}
		if n := pc.calls.Load(); n != 0 {
			t.Errorf("PayInvoice called %d times on a tampered invoice, want 0", n)
		}
		if got := localSat(ctx, t, e.alice); got != alice0 {
			t.Errorf("Alice's channel balance moved %d → %d on a refused invoice", alice0, got)
		}
		if bal, err := w.Balances(); err != nil || bal[node] != (wallet.Balance{}) {
			t.Errorf("balance after the refused purchase = %+v, %v; want zero", bal[node], err)
		}
	})
}
