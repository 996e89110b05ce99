package wallet

import (
	"testing"
	"time"
)

// TestAutoBuySizedToUse: a node whose vouchers were used fast is bought
// enough at the next round to last the longest gap between rounds at that
// rate (twice the recent use), more than TargetBalanceSat; once the use
// has decayed, purchases fall back to TargetBalanceSat. The use-sized
// target never exceeds maxTargetFactor×TargetBalanceSat.
func TestAutoBuySizedToUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wcfg.AutoBuyInterval = time.Minute
	e.wcfg.TargetBalanceSat, e.wcfg.RefillBelowSat, e.wcfg.DailyBudgetSat = 100, 50, 5000
	w := e.wallet(t)
	w.Track(e.node)
	ctx := ctxT(t)
	have := func() uint64 {
		t.Helper()
		b, err := w.Balances()
		if err != nil {
			t.Fatal(err)
		}
		return b[e.node].Available + b[e.node].Pending
	}
	spend := func(sats uint64) {
		t.Helper()
		vs, err := w.Reserve(e.node, sats)
		if err != nil {
			t.Fatalf("reserve %d sats: %v", sats, err)
		}
		if err := w.MarkSpent(vs); err != nil {
			t.Fatal(err)
		}
	}
	w.topUp(ctx)
	if got := have(); got != 100 {
		t.Fatalf("first round: %d sats, want TargetBalanceSat 100", got)
	}
	spend(90)
	w.topUp(ctx)
	if got := have(); got != 180 {
		t.Fatalf("after 90 sats used at once: %d sats, want 180 (twice the recent use)", got)
	}
	if target, below := w.refillLevels(e.node, e.clk.Now()); target != 180 || below != 90 {
		t.Fatalf("levels after 90 sats used: target %d, refill below %d; want 180, 90", target, below)
	}
	// Ten windows later the use has decayed: the configured levels again.
	e.clk.Advance(10 * e.wcfg.useWindow())
	if target, below := w.refillLevels(e.node, e.clk.Now()); target != 100 || below != 50 {
		t.Fatalf("levels after ten windows: target %d, refill below %d; want 100, 50", target, below)
	}
	spend(140)
	e.clk.Advance(10 * e.wcfg.useWindow())
	w.Track(e.node) // in use again (InUseFor passed)
	w.topUp(ctx)
	if got := have(); got != 100 {
		t.Fatalf("after the use decayed: %d sats, want 100", got)
	}
	// A burst far beyond the cap is bought at most maxTargetFactor×.
	w.noteUse(e.node, 100_000, e.clk.Now())
	if target, below := w.refillLevels(e.node, e.clk.Now()); target != maxTargetFactor*100 || below != maxTargetFactor*100 {
		t.Fatalf("levels after a huge burst: target %d, refill below %d; want both %d", target, below, maxTargetFactor*100)
	}
}

// TestAutoBuyUseTakesAQuarterOfBudget: what recent use adds to a node's
// target is bought only up to a quarter of the daily budget left, so one
// busy exit cannot leave the guards nothing for the rest of the day.
func TestAutoBuyUseTakesAQuarterOfBudget(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.wcfg.AutoBuyInterval = time.Minute
	e.wcfg.TargetBalanceSat, e.wcfg.RefillBelowSat, e.wcfg.DailyBudgetSat = 100, 50, 500
	w := e.wallet(t)
	w.Track(e.node)
	ctx := ctxT(t)
	w.topUp(ctx) // 100 sats, 101 of the budget with the fee limit
	vs, err := w.Reserve(e.node, 90)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.MarkSpent(vs); err != nil {
		t.Fatal(err)
	}
	w.noteUse(e.node, 400, e.clk.Now()) // a burst: the use-sized target is 800
	w.topUp(ctx)
	b, err := w.Balances()
	if err != nil {
		t.Fatal(err)
	}
	// 399 sats of budget left: the target may grow by 399/4 = 99 sats, to
	// 199; the balance was 10.
	if got := b[e.node].Available + b[e.node].Pending; got != 199 {
		t.Fatalf("after a burst with 399 sats of budget left: %d sats held, want 199", got)
	}
}
