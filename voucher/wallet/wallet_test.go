package wallet

import (
	"context"
	"errors"
	"github.com/libp2p/go-libp2p/core/peer"
	"os"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/internal/lnfake"
)

func TestBuyReserveRedeem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.wallet(t)
	ctx := ctxT(t)

	p, err := w.Buy(ctx, e.node, 15)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != PurchaseDone || p.AmountSat != 15 || p.PriceMsatPerMB != e.price {
		t.Fatalf("purchase %+v", p)
	}
	if paid, calls := e.ln.Payments(); paid != 1 || calls != 1 {
		t.Fatalf("payments %d, calls %d", paid, calls)
	}
	bals, err := w.Balances()
	if err != nil || bals[e.node].Available != 15 {
		t.Fatalf("balance %+v, %v", bals[e.node], err)
	}
	vs, err := w.Reserve(e.node, 5)
	if err != nil {
		t.Fatal(err)
	}
	if got := sum(vs); got < 5 || got > 8 {
		t.Fatalf("reserved %d sats for 5", got)
	}
	credited, err := e.mint.Redeem(ctx, vs)
	if err != nil || credited != sum(vs) {
		t.Fatalf("redeem: %d, %v", credited, err)
	}
	if err := w.MarkSpent(vs); err != nil {
		t.Fatal(err)
	}
	if err := w.MarkSpent(vs); !errors.Is(err, ErrUnknownVoucher) {
		t.Fatalf("second MarkSpent: %v", err)
	}
	bals, _ = w.Balances()
	if b := bals[e.node]; b.Available != 15-sum(vs) || b.Reserved != 0 {
		t.Fatalf("balance after spend %+v", b)
	}
	// A TOPUP payload redeems as a batch.
	payload, bvs, err := w.ReserveBatch(e.node, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e.mint.RedeemPayload(ctx, payload); err != nil || got != sum(bvs) {
		t.Fatalf("redeem payload: %d, %v", got, err)
	}
	w.MarkSpent(bvs)
	bals, _ = w.Balances()
	if b := bals[e.node]; b.Available != 15-sum(vs)-sum(bvs) {
		t.Fatalf("balance after batch %+v", b)
	}
	// Release puts vouchers back.
	vs2, err := w.Reserve(e.node, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Release(vs2); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Reserve(e.node, 100); !errors.Is(err, ErrInsufficient) {
		t.Fatalf("overdraw: %v", err)
	}
	used, limit, _ := w.BudgetUsed()
	if used != 15+1 || limit != 200 { // amount + fee limit
		t.Fatalf("budget %d/%d", used, limit)
	}
	recent, _ := w.RecentPurchases(10)
	if len(recent) != 1 || recent[0].ID != p.ID {
		t.Fatalf("recent %+v", recent)
	}
	// Past the keyset's redemption window the rest is reported as expired.
	e.clk.Advance(31 * time.Hour)
	bals, _ = w.Balances()
	if b := bals[e.node]; b.Available != 0 || b.Expired != 15-sum(vs)-sum(bvs) {
		t.Fatalf("balance after expiry %+v", b)
	}
	st, err := os.Stat(e.wcfg.Path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("wallet file mode %v, %v", st.Mode(), err)
	}
}

// TestBadInvoicesNeverPaid: an invoice that does not match the quote is
// refused before any PayInvoice call, and the node goes into backoff.
func TestBadInvoicesNeverPaid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tamper func(*lnfake.Invoice)
	}{
		{"amount", func(i *lnfake.Invoice) { i.AmountSat++ }},
		{"msat amount", func(i *lnfake.Invoice) { i.AmountMsat = i.AmountSat*1000 + 1 }},
		{"payee", func(i *lnfake.Invoice) { i.Payee = "02" + i.Payee[2:] }},
		{"payment hash", func(i *lnfake.Invoice) { i.PayHash[0] ^= 1 }},
		{"expires too soon", func(i *lnfake.Invoice) { i.Expiry = i.Expiry.Add(-599 * time.Second) }},
		{"expires too late", func(i *lnfake.Invoice) { i.Expiry = i.Expiry.Add(48 * time.Hour) }},
		{"expiry differs from quote", func(i *lnfake.Invoice) { i.Expiry = i.Expiry.Add(5 * time.Minute) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			w := e.wallet(t)
			e.ln.SetTamper(tc.tamper)
			if _, err := w.Buy(ctxT(t), e.node, 4); !errors.Is(err, ErrInvoiceMismatch) {
				t.Fatalf("Buy: %v, want ErrInvoiceMismatch", err)
			}
			if _, calls := e.ln.Payments(); calls != 0 {
				t.Fatalf("PayInvoice called %d times", calls)
			}
			if _, err := w.Buy(ctxT(t), e.node, 4); !errors.Is(err, ErrBackoff) {
				t.Fatalf("Buy after misbehaviour: %v, want ErrBackoff", err)
			}
			if used, _, _ := w.BudgetUsed(); used != 0 {
				t.Fatalf("budget used %d", used)
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	t.Run("unpublished keyset", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		other := newEnvAt(t, time.Minute) // another node's keysets
		e.wcfg.Published = func(ctx context.Context, node peer.ID) (Published, error) {
			return Published{Payee: e.ln.PayeeHex(), Keysets: other.mint.Keysets(), PriceMsatPerMB: e.price}, nil
		}
		w := e.wallet(t)
		if _, err := w.Buy(ctxT(t), e.node, 4); !errors.Is(err, ErrUnpublishedKeyset) {
			t.Fatalf("Buy: %v, want ErrUnpublishedKeyset", err)
		}
		if _, calls := e.ln.Payments(); calls != 0 {
			t.Fatal("paid")
		}
	})
	t.Run("too many keysets", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		a, b := newEnvAt(t, -time.Minute), newEnvAt(t, -2*time.Minute)
		e.wcfg.Published = func(ctx context.Context, node peer.ID) (Published, error) {
			ks := append(append(e.mint.Keysets(), a.mint.Keysets()...), b.mint.Keysets()...)
			return Published{Payee: e.ln.PayeeHex(), Keysets: ks, PriceMsatPerMB: e.price}, nil
		}
		w := e.wallet(t)
		if _, err := w.Buy(ctxT(t), e.node, 4); !errors.Is(err, ErrUnpublishedKeyset) {
			t.Fatalf("Buy: %v, want ErrUnpublishedKeyset", err)
		}
	})
	t.Run("price", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.wcfg.MaxPriceMsatPerMB = e.price - 1
		w := e.wallet(t)
		if _, err := w.Buy(ctxT(t), e.node, 4); !errors.Is(err, ErrPrice) {
			t.Fatalf("Buy: %v, want ErrPrice", err)
		}
	})
	t.Run("budget", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.wcfg.DailyBudgetSat, e.wcfg.TargetBalanceSat = 20, 10
		w := e.wallet(t)
		if _, err := w.Buy(ctxT(t), e.node, 15); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Buy(ctxT(t), e.node, 6); !errors.Is(err, ErrBudget) {
			t.Fatalf("Buy over budget: %v", err)
		}
		if paid, calls := e.ln.Payments(); paid != 1 || calls != 1 {
			t.Fatalf("payments %d/%d", paid, calls)
		}
		e.clk.Advance(25 * time.Hour) // the window rolls on
		if err := e.mint.Rotate(); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Buy(ctxT(t), e.node, 6); err != nil {
			t.Fatalf("Buy next day: %v", err)
		}
	})
	t.Run("amount the node will not quote", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.wcfg.DailyBudgetSat = 5000
		w := e.wallet(t)
		if _, err := w.Buy(ctxT(t), e.node, 16*64+1); !errors.Is(err, voucher.ErrAmount) {
			t.Fatalf("Buy: %v, want voucher.ErrAmount", err)
		}
	})
}

func TestPrune(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.wallet(t)
	if _, err := w.Buy(ctxT(t), e.node, 6); err != nil {
		t.Fatal(err)
	}
	vs, err := w.Reserve(e.node, 2)
	if err != nil {
		t.Fatal(err)
	}
	w.MarkSpent(vs)
	e.ln.SetFailures(nil, nil, errors.New("lnd down")) // an unfinished purchase
	if _, err := w.Buy(ctxT(t), e.node, 3); !errors.Is(err, ErrPayment) {
		t.Fatal(err)
	}
	if n, err := w.Prune(); n != 0 || err != nil {
		t.Fatalf("early prune: %d, %v", n, err)
	}
	e.clk.Advance(32 * 24 * time.Hour)
	n, err := w.Prune()
	if err != nil {
		t.Fatal(err)
	}
	// Gone: the done purchase, the two spent vouchers and the four
	// expired signed ones (six of 1 sat: splitLadder), and the sighting of
	// the node's (long expired) keyset. Kept: the unfinished purchase and
	// its quoted vouchers.
	if n != 8 {
		t.Fatalf("pruned %d records, want 8", n)
	}
	ps, _ := w.RecentPurchases(-1)
	if len(ps) != 1 || ps[0].State != PurchaseQuoted {
		t.Fatalf("purchases left %+v", ps)
	}
	bals, _ := w.Balances()
	if b := bals[e.node]; b.Pending != 3 || b.Available != 0 || b.Expired != 0 {
		t.Fatalf("balance %+v", b)
	}
}

// TestReserveBulk: a top-up's reservation (ReserveBulk) takes vouchers of
// at least BulkMinSat, worth at most what was asked and at least half of
// it, so the 1- to 3-sat vouchers stay for prepays; a small amount, or
// one the large vouchers cannot make half of, is Reserve's.
func TestReserveBulk(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	w := e.wallet(t)
	ctx := ctxT(t)
	if _, err := w.Buy(ctx, e.node, 150); err != nil {
		t.Fatal(err)
	}
	before, err := w.Balances()
	if err != nil {
		t.Fatal(err)
	}
	small := before[e.node].OneSat
	if small == 0 {
		t.Fatalf("no 1-sat vouchers bought: %+v", before[e.node])
	}
	var took uint64
	for _, sats := range []uint64{15, 9, 30, 8} {
		vs, err := w.ReserveBulk(e.node, sats)
		if err != nil {
			t.Fatalf("ReserveBulk(%d): %v", sats, err)
		}
		got := sum(vs)
		if got > sats || 2*got < sats {
			t.Errorf("ReserveBulk(%d) took %d sats", sats, got)
		}
		for _, v := range vs {
			if v.Amount < BulkMinSat {
				t.Errorf("ReserveBulk(%d) took a %d-sat voucher", sats, v.Amount)
			}
		}
		took += got
	}
	after, _ := w.Balances()
	if b := after[e.node]; b.OneSat != small || b.Reserved != took {
		t.Fatalf("after bulk reservations of %d sats: %+v, want %d 1-sat vouchers kept", took, b, small)
	}
	// Below 2 × BulkMinSat it is Reserve: exact, with small vouchers.
	vs, err := w.ReserveBulk(e.node, 3)
	if err != nil || sum(vs) != 3 {
		t.Fatalf("ReserveBulk(3): %d sats, %v", sum(vs), err)
	}
	payload, bvs, err := w.ReserveBulkBatch(e.node, 12)
	if err != nil || sum(bvs) > 12 || 2*sum(bvs) < 12 {
		t.Fatalf("ReserveBulkBatch(12): %d sats, %v", sum(bvs), err)
	}
	if got, err := e.mint.RedeemPayload(ctx, payload); err != nil || got != sum(bvs) {
		t.Fatalf("redeem bulk payload: %d, %v", got, err)
	}
}
