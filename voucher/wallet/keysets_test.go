package wallet

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/mint"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// monthlyMint gives a node the default rotation: 30 days of minting and 7
// of grace.
func monthlyMint(c *mint.Config) { c.KeysetLifetime, c.Grace = 30*24*time.Hour, 7*24*time.Hour }

// extraKeyset returns a keyset the node's mint never signs with, minting
// from start for window.
func extraKeyset(t *testing.T, start time.Time, window time.Duration) *voucher.Keyset {
	t.Helper()
	start = start.Truncate(time.Second)
	sk, err := voucher.GenerateKeyset(testAmounts, 2048, start, start.Add(window), start.Add(window+time.Hour), pool.Gen)
	if err != nil {
		t.Fatal(err)
	}
	return sk.Public()
}

// publishing makes e's node publish its mint's keysets plus whatever
// extra is set to at the moment.
type publishing struct {
	mu    sync.Mutex
	extra []*voucher.Keyset // guarded by mu
}

func (p *publishing) set(ks ...*voucher.Keyset) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.extra = ks
}

func (p *publishing) install(e *env) {
	e.wcfg.Published = func(ctx context.Context, node peer.ID) (Published, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		ks := append(e.mint.Keysets(), p.extra...)
		return Published{Payee: e.ln.PayeeHex(), Keysets: ks, PriceMsatPerMB: e.price}, nil
	}
}

// TestKeysetWindowRefused: a node that publishes a keyset minting for less
// than the minimum (7 days by default) is refused before anything is paid
// and goes into backoff; one of exactly the minimum is fine.
func TestKeysetWindowRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		window time.Duration
		want   error
	}{
		{"one hour", time.Hour, ErrKeysetWindow},
		{"a second short of 7 days", DefaultMinMintWindow - time.Second, ErrKeysetWindow},
		{"7 days", DefaultMinMintWindow, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnvWith(t, 0, monthlyMint)
			var pub publishing
			pub.install(e)
			// Not yet mintable, so it only has to pass the window rule.
			pub.set(extraKeyset(t, e.clk.Now().Add(24*time.Hour), tc.window))
			w := e.wallet(t)
			_, err := w.Buy(ctxT(t), e.node, 4)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Buy: %v, want %v", err, tc.want)
			}
			if tc.want == nil {
				return
			}
			if _, calls := e.ln.Payments(); calls != 0 {
				t.Fatalf("PayInvoice called %d times", calls)
			}
			if _, err := w.Buy(ctxT(t), e.node, 4); !errors.Is(err, ErrBackoff) {
				t.Fatalf("Buy after the refusal: %v, want ErrBackoff", err)
			}
		})
	}
}

// TestKeysetChurnRefused: a node whose fourth new keyset appears within 30
// days is refused before anything is paid; the refusal holds in a
// restarted wallet (the sightings are in the wallet file, the backoff is
// not) and ends once the sightings are older than the period.
func TestKeysetChurnRefused(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, 0, monthlyMint)
	var pub publishing
	pub.install(e)
	w := e.wallet(t)
	ctx := ctxT(t)
	now := e.clk.Now()
	month := 30 * 24 * time.Hour

	// The mint's own keyset is the first; each extra is one more.
	pub.set(extraKeyset(t, now, month)) // 2 new
	if _, err := w.Buy(ctx, e.node, 3); err != nil {
		t.Fatalf("Buy with 2 new keysets: %v", err)
	}
	e.clk.Advance(24 * time.Hour)
	pub.set(extraKeyset(t, now.Add(time.Second), month)) // 3 new
	if _, err := w.Buy(ctx, e.node, 3); err != nil {
		t.Fatalf("Buy with 3 new keysets in 30 days: %v", err)
	}
	e.clk.Advance(24 * time.Hour)
	pub.set(extraKeyset(t, now.Add(2*time.Second), month)) // 4 new
	if _, err := w.Buy(ctx, e.node, 3); !errors.Is(err, ErrKeysetChurn) {
		t.Fatalf("Buy with 4 new keysets in 30 days: %v, want ErrKeysetChurn", err)
	}
	if paid, calls := e.ln.Payments(); paid != 2 || calls != 2 {
		t.Fatalf("payments %d, calls %d; want the refused purchase unpaid", paid, calls)
	}

	// A restarted wallet remembers, even once the node shows only its
	// own keyset again.
	w.Stop()
	pub.set()
	w2 := e.wallet(t)
	if _, err := w2.Buy(ctx, e.node, 3); !errors.Is(err, ErrKeysetChurn) {
		t.Fatalf("Buy after a restart: %v, want ErrKeysetChurn", err)
	}
	if _, calls := e.ln.Payments(); calls != 2 {
		t.Fatalf("PayInvoice called %d times, want 2", calls)
	}
	// More new keysets are not stored: the file does not grow.
	for i := range 3 {
		pub.set(extraKeyset(t, now.Add(time.Duration(3+i)*time.Second), month))
		w2.forgive(e.node)
		if _, err := w2.Buy(ctx, e.node, 3); !errors.Is(err, ErrKeysetChurn) {
			t.Fatalf("Buy: %v, want ErrKeysetChurn", err)
		}
	}
	if n := seenCount(t, w2, e.node); n != DefaultMaxNewKeysets+1 {
		t.Fatalf("%d sightings stored, want %d", n, DefaultMaxNewKeysets+1)
	}

	// Sightings age out of the period: 30 days after the second one only
	// the fourth and the mint's next keyset count, and the node is
	// accepted again.
	pub.set()
	e.clk.Advance(29 * 24 * time.Hour)
	if err := e.mint.Rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Buy(ctx, e.node, 3); err != nil {
		t.Fatalf("Buy after the period: %v", err)
	}
}

// seenCount returns how many keyset sightings w stores for node.
func seenCount(t *testing.T, w *Wallet, node peer.ID) int {
	t.Helper()
	n := 0
	err := w.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSeen).Bucket([]byte(node)); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestKeysetRotationForAYear: a node on the default rotation (a new
// keyset every 30 days, published 7.5 days ahead) is never refused by a
// client that buys from it every 47 hours for a year and prunes its file
// as it goes; it never sees more than 3 new keysets in 30 days, and the
// wallet keeps only a few sightings.
func TestKeysetRotationForAYear(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, 0, monthlyMint)
	e.wcfg.DailyBudgetSat = 1000
	w := e.wallet(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	used := map[voucher.KeysetID]bool{}
	most := 0 // keysets first seen within 30 days, at most
	// First contact late in the first keyset's life, when the next one is
	// already published: the worst case, 2 new at once and a third 30
	// days after the second was made.
	e.clk.Advance(25 * 24 * time.Hour)
	end := e.clk.Now().Add(365 * 24 * time.Hour)
	for i := 0; e.clk.Now().Before(end); i++ {
		if err := e.mint.Rotate(); err != nil { // the mint's housekeeper
			t.Fatal(err)
		}
		p, err := w.Buy(ctx, e.node, 1)
		if err != nil {
			t.Fatalf("day %.1f: Buy: %v", e.clk.Now().Sub(end.Add(-365*24*time.Hour)).Hours()/24, err)
		}
		used[p.Keyset] = true
		recent, err := w.noteKeysets(e.node, nil, e.clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		most = max(most, recent)
		if i%10 == 0 {
			if _, err := w.Prune(); err != nil {
				t.Fatal(err)
			}
		}
		e.clk.Advance(47 * time.Hour)
	}
	t.Logf("%d keysets used in a year; at most %d new ones within 30 days", len(used), most)
	if most > DefaultMaxNewKeysets {
		t.Fatalf("%d new keysets within 30 days, the limit is %d", most, DefaultMaxNewKeysets)
	}
	if len(used) < 12 {
		t.Fatalf("bought with %d keysets in a year, want a new one every 30 days", len(used))
	}
	if n := seenCount(t, w, e.node); n > 4 {
		t.Fatalf("%d sightings kept after pruning, want at most 4", n)
	}
}
