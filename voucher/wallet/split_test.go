package wallet

import (
	"crypto/rsa"
	"slices"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
)

// TestSplitLadder: a purchase splits into the node default's denominations
// (1..1024 sats) with the exact sum, within one mint request, no voucher
// above the ladder's cap, and the spare voucher slots spent on 1-sat
// vouchers for handshake prepays (VOUCHERS.md §4).
func TestSplitLadder(t *testing.T) {
	t.Parallel()
	var amounts []uint64
	for e := range 11 {
		amounts = append(amounts, 1<<e)
	}
	privs := make([]*rsa.PrivateKey, len(amounts))
	for i := range privs {
		k, err := pool.Gen(2048)
		if err != nil {
			t.Fatal(err)
		}
		privs[i] = k
	}
	t0 := time.Unix(1_800_000_000, 0)
	sk, err := voucher.NewSigningKeyset(amounts, privs, t0, t0.Add(time.Hour), t0.Add(2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	ks := sk.Public()
	for _, tc := range []struct {
		sats      uint64
		n, ones   int
		maxAmount uint64
	}{
		{20, 20, 20, 1},
		{64, 64, 64, 1},
		{300, 64, 26, 8},
		{600, 60, 18, 16},
		{1500, 58, 2, 32},
	} {
		got, err := splitLadder(ks, tc.sats)
		if err != nil {
			t.Fatalf("%d sats: %v", tc.sats, err)
		}
		var sum uint64
		ones := 0
		for _, a := range got {
			sum += a
			if a == 1 {
				ones++
			}
		}
		if sum != tc.sats || len(got) != tc.n || ones != tc.ones || slices.Max(got) != tc.maxAmount {
			t.Errorf("%d sats: %v (%d vouchers, %d of 1 sat, sum %d); want %d vouchers, %d of 1 sat, none above %d",
				tc.sats, got, len(got), ones, sum, tc.n, tc.ones, tc.maxAmount)
		}
		if len(got) > voucher.MaxVouchersPerMint {
			t.Errorf("%d sats: %d vouchers, more than one mint request", tc.sats, len(got))
		}
	}
}

// TestAutoBuyOneSat: a node held from whose 1-sat vouchers run low is
// bought OneSatRefillSat from, in 1-sat vouchers, though its balance is
// above RefillBelowSat; then no more.
func TestAutoBuyOneSat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wcfg.AutoBuy = true
	e.wcfg.AutoBuyInterval = 20 * time.Millisecond
	e.wcfg.TargetBalanceSat, e.wcfg.RefillBelowSat, e.wcfg.DailyBudgetSat = 100, 50, 300
	w := e.wallet(t)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Stop() })
	w.Track(e.node)
	waitFor(t, func() bool {
		b, _ := w.Balances()
		return b[e.node].Available == 100 && b[e.node].OneSat == 28 // 28 of 1 sat, 36 of 2
	})
	for range 21 { // 21 circuits prepaid: 7 vouchers of 1 sat left
		vs, err := w.Reserve(e.node, 1)
		if err != nil || sum(vs) != 1 {
			t.Fatalf("reserve 1 sat: %d sats, %v", sum(vs), err)
		}
		if err := w.MarkSpent(vs); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool {
		b, _ := w.Balances()
		return b[e.node].Available == 79+OneSatRefillSat && b[e.node].OneSat == 7+int(OneSatRefillSat)
	})
	if paid, _ := e.ln.Payments(); paid != 2 {
		t.Fatalf("%d payments, want 2", paid)
	}
}
