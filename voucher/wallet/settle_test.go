package wallet

import (
	"errors"
	"testing"

	"github.com/co-infuse/co-infuse/voucher"
)

// TestSettleUnknownOutcome: two TOPUPs get no answer; the hop redeemed the
// first and not the second. Both are parked (not offered again), and
// Settle swaps them at the real mint on loopback: the swap's answer names
// the redeemed voucher, which is spent for good, and the others are
// swapped for new vouchers of the same value, which redeem. Then a crash with a voucher reserved and redeemed: the next run
// settles it at start, and it is never offered again.
func TestSettleUnknownOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	w := e.wallet(t)
	if _, err := w.Buy(ctx, e.node, 20); err != nil { // 1,1,2,2,4,4,4,2
		t.Fatal(err)
	}
	redeemed, err := w.Reserve(e.node, 4)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.mint.Redeem(ctx, redeemed); err != nil || c != 4 {
		t.Fatalf("hop redeems: %d, %v", c, err)
	}
	if err := w.Unsure(redeemed); err != nil { // its TOPUP_ACK never came
		t.Fatal(err)
	}
	kept, err := w.Reserve(e.node, 16)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Unsure(kept); err != nil { // timed out before the hop saw it
		t.Fatal(err)
	}
	if _, err := w.Reserve(e.node, 1); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("Reserve with every voucher unsure: %v, want ErrInsufficient", err)
	}
	if b, _ := w.Balances(); b[e.node].Reserved != 20 || b[e.node].Available != 0 {
		t.Fatalf("balance while unsure %+v", b[e.node])
	}
	n, err := w.Settle(ctx)
	if want := len(redeemed) + len(kept); err != nil || n != want {
		t.Fatalf("Settle = %d, %v; want %d settled", n, err, want)
	}
	if b, _ := w.Balances(); b[e.node].Reserved != 0 || b[e.node].Available != 16 || b[e.node].Spent != 4 || b[e.node].Vouchers != len(kept) {
		t.Fatalf("balance after settling %+v, want 16 available in %d vouchers, 4 spent", b[e.node], len(kept))
	}
	again, err := w.Reserve(e.node, 16)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range again {
		if v.SpendID() == redeemed[0].SpendID() {
			t.Fatal("the redeemed voucher is offered again")
		}
	}
	if c, err := e.mint.Redeem(ctx, again); err != nil || c != 16 {
		t.Fatalf("the settled voucher redeems for %d, %v; want 16", c, err)
	}
	if err := w.MarkSpent(again); err != nil {
		t.Fatal(err)
	}

	// A crash with a voucher reserved and redeemed by the hop.
	if _, err := w.Buy(ctx, e.node, 8); err != nil {
		t.Fatal(err)
	}
	lost, err := w.Reserve(e.node, 8)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.mint.Redeem(ctx, lost); err != nil || c != 8 {
		t.Fatalf("hop redeems: %d, %v", c, err)
	}
	w.Stop()
	w2 := e.wallet(t)
	if err := w2.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		b, _ := w2.Balances()
		return b[e.node].Reserved == 0
	})
	if _, err := w2.Reserve(e.node, 1); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("after settling at start: Reserve = %v, want ErrInsufficient (the voucher was spent)", err)
	}
	if c, err := e.mint.Redeem(ctx, lost); c != 0 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("sanity: the lost voucher redeems again for %d, %v", c, err)
	}
}
