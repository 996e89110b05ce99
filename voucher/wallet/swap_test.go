package wallet

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	bolt "go.etcd.io/bbolt"

	"github.com/co-infuse/co-infuse/voucher"
)

// voucherStates returns the wallet's state of each of vs.
func voucherStates(t *testing.T, w *Wallet, vs []voucher.Voucher) []VoucherState {
	t.Helper()
	out := make([]VoucherState, len(vs))
	err := w.db.View(func(tx *bolt.Tx) error {
		for i := range vs {
			id := vs[i].SpendID()
			var r voucherRecord
			if ok, err := getJSON(tx.Bucket(bucketVouchers), id[:], &r); err != nil || !ok {
				t.Errorf("voucher %d not in the wallet: %v", i, err)
			}
			out[i] = r.State
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func allIn(states []VoucherState, want VoucherState) bool {
	for _, s := range states {
		if s != want {
			return false
		}
	}
	return len(states) > 0
}

// swaps returns the wallet's swap records by request id.
func swaps(t *testing.T, w *Wallet) map[string]swapRecord {
	t.Helper()
	out := map[string]swapRecord{}
	err := w.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSwaps)
		return b.ForEach(func(k, _ []byte) error {
			var r swapRecord
			_, err := getJSON(b, k, &r)
			out[string(k)] = r
			return err
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantBalance(t *testing.T, w *Wallet, node peer.ID, available, reserved, spent uint64) {
	t.Helper()
	bals, err := w.Balances()
	if err != nil {
		t.Fatal(err)
	}
	b := bals[node]
	if b.Available != available || b.Reserved != reserved || b.Spent != spent || b.Pending != 0 {
		t.Fatalf("balance %+v, want %d available, %d reserved, %d spent", b, available, reserved, spent)
	}
}

// TestSwapBeatsStaleRedemption is the race of VOUCHERS.md §3.10, both
// ways, at the real mint on loopback. Settle first: the wallet swaps the
// unsure vouchers for new ones of the same value, and the hop's late
// redemption of the old ones is refused as spent (the hop gets nothing,
// the user loses nothing); the new ones redeem. Redemption first: the
// swap finds them spent, the wallet marks them spent and gains nothing.
func TestSwapBeatsStaleRedemption(t *testing.T) {
	t.Parallel()
	t.Run("settle first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := ctxT(t)
		w := e.wallet(t)
		old := unsureAfterBuy(ctx, t, e, w) // offered nowhere; its TOPUP "got no answer"
		wantBalance(t, w, e.node, 12, 8, 0)
		n, err := w.Settle(ctx)
		if err != nil || n != len(old) {
			t.Fatalf("Settle = %d, %v; want %d", n, err, len(old))
		}
		wantBalance(t, w, e.node, 20, 0, 0)
		if st := voucherStates(t, w, old); !allIn(st, VoucherSwapped) {
			t.Fatalf("old vouchers in states %v, want swapped", st)
		}
		refusedAsSpent(ctx, t, e, old)
		all := redeemAll(ctx, t, e, w, 20)
		for _, v := range all {
			for _, o := range old {
				if v.SpendID() == o.SpendID() {
					t.Fatal("a swapped-away voucher is offered again")
				}
			}
		}
		if signed, replayed := e.mint.SwapCounts(); signed != 1 || replayed != 0 {
			t.Fatalf("mint SwapCounts = %d, %d; want one swap", signed, replayed)
		}
		if n, err := w.Settle(ctx); n != 0 || err != nil {
			t.Fatalf("second Settle = %d, %v; want nothing to do", n, err)
		}
		if err := w.MarkSpent(all); err != nil {
			t.Fatal(err)
		}
		e.clk.Advance(31 * 24 * time.Hour) // past Retention: finished records go
		if _, err := w.Prune(); err != nil {
			t.Fatal(err)
		}
		if s := swaps(t, w); len(s) != 0 {
			t.Fatalf("%d swap records left after Retention", len(s))
		}
		w.db.View(func(tx *bolt.Tx) error {
			if n := tx.Bucket(bucketVouchers).Stats().KeyN; n != 0 {
				t.Errorf("%d voucher records left after Retention, want 0 (all spent or swapped)", n)
			}
			return nil
		})
	})
	t.Run("redemption first", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		ctx := ctxT(t)
		w := e.wallet(t)
		if _, err := w.Buy(ctx, e.node, 20); err != nil {
			t.Fatal(err)
		}
		old, err := w.Reserve(e.node, 8)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := e.mint.Redeem(ctx, old); c != 8 || err != nil { // the hop redeems; its ACK is lost
			t.Fatalf("hop redeems %d, %v", c, err)
		}
		if err := w.Unsure(old); err != nil {
			t.Fatal(err)
		}
		n, err := w.Settle(ctx)
		if err != nil || n != len(old) {
			t.Fatalf("Settle = %d, %v; want %d", n, err, len(old))
		}
		wantBalance(t, w, e.node, 12, 0, 8)
		if st := voucherStates(t, w, old); !allIn(st, VoucherSpent) {
			t.Fatalf("old vouchers in states %v, want spent", st)
		}
		if signed, _ := e.mint.SwapCounts(); signed != 0 {
			t.Fatalf("the mint signed %d swaps of spent vouchers", signed)
		}
		for _, s := range swaps(t, w) {
			if s.State != SwapAbandoned {
				t.Fatalf("swap in state %d, want abandoned", s.State)
			}
		}
		rest, err := w.Reserve(e.node, 12)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := e.mint.Redeem(ctx, rest); c != 12 || err != nil {
			t.Fatalf("the rest redeems for %d, %v; want 12", c, err)
		}
	})
}

// TestSwapMixed: of the unsure vouchers, the hop redeemed some: the swap
// is answered with their states, the wallet marks them spent and swaps
// the rest in a new request.
func TestSwapMixed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	w := e.wallet(t)
	if _, err := w.Buy(ctx, e.node, 20); err != nil {
		t.Fatal(err)
	}
	redeemed, err := w.Reserve(e.node, 4)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.mint.Redeem(ctx, redeemed); c != 4 || err != nil {
		t.Fatalf("hop redeems %d, %v", c, err)
	}
	kept, err := w.Reserve(e.node, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Unsure(append(append([]voucher.Voucher(nil), redeemed...), kept...)); err != nil {
		t.Fatal(err)
	}
	n, err := w.Settle(ctx)
	if want := len(redeemed) + len(kept); err != nil || n != want {
		t.Fatalf("Settle = %d, %v; want %d", n, err, want)
	}
	wantBalance(t, w, e.node, 16, 0, 4)
	if st := voucherStates(t, w, redeemed); !allIn(st, VoucherSpent) {
		t.Fatalf("redeemed vouchers in states %v, want spent", st)
	}
	if st := voucherStates(t, w, kept); !allIn(st, VoucherSwapped) {
		t.Fatalf("kept vouchers in states %v, want swapped", st)
	}
	got := map[SwapState]int{}
	for _, s := range swaps(t, w) {
		got[s.State]++
	}
	if got[SwapAbandoned] != 1 || got[SwapDone] != 1 || len(got) != 2 {
		t.Fatalf("swap records %v, want one abandoned and one done", got)
	}
	refusedAsSpent(ctx, t, e, kept)
	redeemAll(ctx, t, e, w, 16)
}

// TestSwapCrashPoints: the wallet stops after storing a swap and before
// sending it, and after the mint answered and before the answer was
// stored (the answer is lost). A new wallet on the same file resumes the
// same request id; the mint signs once and answers the retry from its
// store; the balance is exact and the old vouchers are dead at the mint.
// On the way, a node that cannot be reached leaves the swap pending.
func TestSwapCrashPoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		inject       func(w *Wallet)
		signedBefore int64 // swaps the mint signed before the restart
	}{
		{"after storing the swap, before sending", func(w *Wallet) { w.afterSwapStore = func() error { return errCrash } }, 0},
		{"after the mint answered, before storing the answer", func(w *Wallet) { w.afterSwapResponse = func() error { return errCrash } }, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			var down atomic.Bool
			e.wcfg.Dial = func(ctx context.Context, node peer.ID) (io.ReadWriteCloser, error) {
				if down.Load() {
					return nil, errors.New("node unreachable")
				}
				return e.clientHost.NewStream(ctx, node, protocol.ID(voucher.ProtocolID))
			}
			ctx := ctxT(t)
			w := e.wallet(t)
			old := unsureAfterBuy(ctx, t, e, w) // offered nowhere; its TOPUP "got no answer"
			tc.inject(w)
			if _, err := w.Settle(ctx); !errors.Is(err, errCrash) {
				t.Fatalf("Settle = %v, want the crash", err)
			}
			wantBalance(t, w, e.node, 12, 8, 0)
			before := swaps(t, w)
			if len(before) != 1 {
				t.Fatalf("%d swaps stored, want 1", len(before))
			}
			if signed, _ := e.mint.SwapCounts(); signed != tc.signedBefore {
				t.Fatalf("mint signed %d swaps before the restart, want %d", signed, tc.signedBefore)
			}
			w.Stop()

			w2 := e.wallet(t)
			down.Store(true)
			if n, err := w2.Settle(ctx); n != 0 || err == nil {
				t.Fatalf("Settle with the node unreachable = %d, %v", n, err)
			}
			wantBalance(t, w2, e.node, 12, 8, 0)
			if st := voucherStates(t, w2, old); !allIn(st, VoucherUnsure) {
				t.Fatalf("inputs in states %v while the swap is pending, want unsure", st)
			}
			if _, err := w2.Reserve(e.node, 13); !errors.Is(err, ErrInsufficient) {
				t.Fatalf("Reserve took a pending swap's input: %v", err)
			}
			down.Store(false)
			n, err := w2.Settle(ctx)
			if err != nil || n != len(old) {
				t.Fatalf("Settle after restart = %d, %v; want %d", n, err, len(old))
			}
			after := swaps(t, w2)
			for id, s := range before {
				if len(after) != 1 || after[id].State != SwapDone || s.State != SwapPending {
					t.Fatalf("swaps before %v, after %v: want the same id, pending then done", before, after)
				}
			}
			signed, replayed := e.mint.SwapCounts()
			if signed != 1 || replayed != tc.signedBefore {
				t.Fatalf("mint SwapCounts = %d signed, %d replayed; want 1, %d", signed, replayed, tc.signedBefore)
			}
			wantBalance(t, w2, e.node, 20, 0, 0)
			refusedAsSpent(ctx, t, e, old)
			redeemAll(ctx, t, e, w2, 20)
		})
	}
}

// TestSwapSplitFitsOneMessage: a swap request never exceeds the frame,
// even with many inputs and 4096-bit keys; its outputs add up.
func TestSwapSplitFitsOneMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ks := e.mint.Keysets()[0]
	for _, tc := range []struct {
		total uint64
		size  int
	}{{1, 100}, {20, 100}, {31 * 16, 12 * 556}, {64, 50 * 300}, {16 * 30, 40 * 556}} {
		out, err := swapSplit(ks, tc.total, tc.size)
		if err != nil {
			t.Fatalf("%d sats with %d bytes of inputs: %v", tc.total, tc.size, err)
		}
		var sum uint64
		n := tc.size
		for _, a := range out {
			sum += a
			k, _ := ks.Key(a)
			n += 3 + k.Size()
		}
		if sum != tc.total || n > voucher.MaxMessageSize || len(out) > voucher.MaxSwapOutputs {
			t.Fatalf("%d sats: %v (%d bytes)", tc.total, out, n)
		}
	}
	if _, err := swapSplit(ks, 16*65, voucher.MaxMessageSize-1000); !errors.Is(err, voucher.ErrAmount) {
		t.Fatalf("no room: %v", err)
	}
}

// TestSwapRefusedStaysUnsure: a pending swap whose output keyset stopped
// minting before it was sent (the wallet was down across a rotation) is
// refused by the mint; the swap is abandoned, its inputs stay unsure and
// are not offered, and the next round swaps them, still in their grace
// period, into the node's new keyset.
func TestSwapRefusedStaysUnsure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	w := e.wallet(t)
	old := unsureAfterBuy(ctx, t, e, w) // offered nowhere; its TOPUP "got no answer"
	w.afterSwapStore = func() error { return errCrash }
	if _, err := w.Settle(ctx); !errors.Is(err, errCrash) {
		t.Fatalf("Settle = %v, want the crash", err)
	}
	w.afterSwapStore = nil
	e.clk.Advance(25 * time.Hour) // the keyset stopped minting at 24 h; it redeems until 30 h
	if err := e.mint.Rotate(); err != nil {
		t.Fatal(err)
	}
	if n, err := w.Settle(ctx); n != 0 || !errors.Is(err, voucher.ErrExpired) {
		t.Fatalf("Settle of the stale swap = %d, %v; want a refusal as expired", n, err)
	}
	if st := voucherStates(t, w, old); !allIn(st, VoucherUnsure) {
		t.Fatalf("inputs in states %v after the refusal, want unsure", st)
	}
	for _, s := range swaps(t, w) {
		if s.State != SwapAbandoned {
			t.Fatalf("refused swap in state %d, want abandoned", s.State)
		}
	}
	wantBalance(t, w, e.node, 12, 8, 0)
	n, err := w.Settle(ctx)
	if err != nil || n != len(old) {
		t.Fatalf("next round: Settle = %d, %v; want %d", n, err, len(old))
	}
	wantBalance(t, w, e.node, 20, 0, 0)
	refusedAsSpent(ctx, t, e, old)
}

// TestUnsureExpires: unsure vouchers whose keyset stopped redeeming
// before they were settled are worth nothing anywhere: Settle swaps
// nothing and counts them as expired, not reserved.
func TestUnsureExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := ctxT(t)
	w := e.wallet(t)
	unsureAfterBuy(ctx, t, e, w)
	e.clk.Advance(31 * time.Hour) // past the keyset's redeem_until (30 h)
	if n, err := w.Settle(ctx); n != 0 || err != nil {
		t.Fatalf("Settle = %d, %v; want nothing settled, no error", n, err)
	}
	b, _ := w.Balances()
	if got := b[e.node]; got.Reserved != 0 || got.Expired != 20 || got.Available != 0 {
		t.Fatalf("balance %+v, want 20 expired", got)
	}
	if len(swaps(t, w)) != 0 {
		t.Fatal("a swap of expired vouchers was stored")
	}
}

// refusedAsSpent: the mint refuses vouchers the wallet swapped away (a
// late redemption of them) as spent, crediting nothing.
func refusedAsSpent(ctx context.Context, t *testing.T, e *env, old []voucher.Voucher) {
	t.Helper()
	if c, err := e.mint.Redeem(ctx, old); c != 0 || !errors.Is(err, voucher.ErrSpent) {
		t.Fatalf("late redemption of swapped-away vouchers: %d, %v; want 0, ErrSpent", c, err)
	}
}

// redeemAll reserves sats of e's node from w, all the wallet should hold
// there, and requires the mint to credit exactly that.
func redeemAll(ctx context.Context, t *testing.T, e *env, w *Wallet, sats uint64) []voucher.Voucher {
	t.Helper()
	all, err := w.Reserve(e.node, sats)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := e.mint.Redeem(ctx, all); c != sats || err != nil {
		t.Fatalf("the wallet's vouchers redeem for %d, %v; want %d", c, err, sats)
	}
	return all
}

// unsureAfterBuy buys 20 sats of e's node into w and parks 8 of them as
// of unknown outcome (a TOPUP that got no answer), returning those 8.
func unsureAfterBuy(ctx context.Context, t *testing.T, e *env, w *Wallet) []voucher.Voucher {
	t.Helper()
	if _, err := w.Buy(ctx, e.node, 20); err != nil {
		t.Fatal(err)
	}
	old, err := w.Reserve(e.node, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Unsure(old); err != nil {
		t.Fatal(err)
	}
	return old
}
