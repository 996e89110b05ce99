package wallet

import (
	"context"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher/mint"
)

// TestNoOneSatRefillWithoutOneSatKey: the 1-sat refill buys from a node
// short of 1-sat vouchers, but a node's keyset need not have a 1-sat key
// (the node chooses its denominations). Such a node's vouchers never
// include one, so it was always "short": every top-up while its balance
// was under the target plus OneSatRefillSat bought again, one Lightning
// payment (fees, an invoice the node can time) per 64 sats spent instead
// of one per refill. A node whose keyset has no 1-sat key gets no 1-sat
// refill.
func TestNoOneSatRefillWithoutOneSatKey(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, 0, func(c *mint.Config) { c.Denominations = []uint64{2, 4, 8, 16} })
	e.wcfg.TargetBalanceSat, e.wcfg.RefillBelowSat, e.wcfg.DailyBudgetSat = 100, 50, 1000
	w := e.wallet(t)
	w.Track(e.node)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.topUp(ctx)
	b, err := w.Balances()
	if err != nil {
		t.Fatal(err)
	}
	if got := b[e.node].Available + b[e.node].Pending; got != 100 {
		t.Fatalf("first top-up: %d sats, want 100", got)
	}
	for i := range 3 {
		w.topUp(ctx)
		if paid, _ := e.ln.Payments(); paid != 1 {
			b, _ := w.Balances()
			t.Fatalf("top-up %d after the first: %d payments, want 1 (balance %+v)", i+2, paid, b[e.node])
		}
	}
}
