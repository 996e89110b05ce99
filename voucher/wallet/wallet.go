package wallet

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// maxTrackedNodes bounds the in-use and backoff maps.
const maxTrackedNodes = 1024

// budgetWindow is the rolling window of the daily budget.
const budgetWindow = 24 * time.Hour

// Wallet is the client's voucher wallet. New opens the store; Start
// resumes unfinished purchases and starts automatic purchase; Stop stops it
// and closes the store. All methods are safe for concurrent use.
type Wallet struct {
	cfg Config
	log *slog.Logger
	db  *bolt.DB

	mu       sync.Mutex
	inUse    map[peer.ID]time.Time // guarded by mu; node → in use until
	backoff  map[peer.ID]*backoff  // guarded by mu
	inflight map[string]bool       // guarded by mu; purchases being advanced
	held     map[peer.ID]uint64    // guarded by mu; available sats per node (refreshHeld)
	used     map[peer.ID]use       // guarded by mu; recent reservations per node (usage.go)
	// noOneSat marks nodes whose keyset, at the last purchase, had no
	// 1-sat key: topUp's 1-sat refill cannot help them. Guarded by mu.
	noOneSat map[peer.ID]bool

	// rng draws refill delays and orders; owned by run.
	rng *rand.Rand

	// settleMu serialises Settle: one swap per node at a time.
	settleMu sync.Mutex

	// buyMu serialises the budget check and the quote's store, so two
	// concurrent purchases cannot both fit into the same remaining budget.
	buyMu sync.Mutex

	lifeMu  sync.Mutex
	started bool // guarded by lifeMu
	stopped bool // guarded by lifeMu
	quit    chan struct{}
	wg      sync.WaitGroup

	// Test hooks: run after the named step is persisted; an error aborts
	// the purchase there, like a crash.
	afterQuote, afterPay, afterMintResponse func() error
	// afterSwapStore runs after a swap is stored, before it is sent;
	// afterSwapResponse after the mint's signatures arrived, before they
	// are stored (settle.go).
	afterSwapStore, afterSwapResponse func() error
}

type backoff struct {
	until time.Time
	delay time.Duration
}

// New opens (or creates) the wallet file.
func New(cfg Config) (*Wallet, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("wallet: open store: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketPurchases, bucketVouchers, bucketKeysets, bucketSeen, bucketSwaps} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("wallet: create buckets: %w", err)
	}
	w := &Wallet{
		cfg:      cfg,
		log:      cfg.Logger.With("subsys", "voucher/wallet"),
		db:       db,
		inUse:    map[peer.ID]time.Time{},
		backoff:  map[peer.ID]*backoff{},
		inflight: map[string]bool{},
		held:     map[peer.ID]uint64{},
		used:     map[peer.ID]use{},
		noOneSat: map[peer.ID]bool{},
		rng:      newRand(),
		quit:     make(chan struct{}),
	}
	w.refreshHeld()
	return w, nil
}

// Start starts the owner goroutine that resumes unfinished purchases and,
// with Config.AutoBuy, keeps balances topped up. Safe to call twice; fails
// after Stop.
func (w *Wallet) Start() error {
	w.lifeMu.Lock()
	defer w.lifeMu.Unlock()
	if w.stopped {
		return ErrClosed
	}
	if w.started {
		return nil
	}
	// Nothing is being offered yet: vouchers still reserved were handed
	// out by a run that crashed. Park them until their node says whether
	// it redeemed them (settle.go).
	if n, err := w.parkReserved(); err != nil {
		return fmt.Errorf("wallet: settle reserved vouchers: %w", err)
	} else if n > 0 {
		w.log.Info("vouchers reserved at a crash await settlement", "vouchers", n)
	}
	w.started = true
	w.wg.Add(1)
	go w.run()
	return nil
}

// Stop stops the background goroutine, waits for it and closes the store.
// Calls in progress on other goroutines must have returned. Safe to call
// twice.
func (w *Wallet) Stop() error {
	w.lifeMu.Lock()
	if w.stopped {
		w.lifeMu.Unlock()
		return nil
	}
	w.stopped = true
	w.lifeMu.Unlock()
	close(w.quit)
	w.wg.Wait()
	return w.db.Close()
}

// Track marks node as in use (automatic purchase keeps a balance there)
// for Config.InUseFor.
func (w *Wallet) Track(node peer.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.trackLocked(node)
}

func (w *Wallet) trackLocked(node peer.ID) {
	now := w.cfg.Now()
	if _, ok := w.inUse[node]; !ok && len(w.inUse) >= maxTrackedNodes {
		for n, until := range w.inUse {
			if until.Before(now) {
				delete(w.inUse, n)
			}
		}
		if len(w.inUse) >= maxTrackedNodes {
			return
		}
	}
	w.inUse[node] = now.Add(w.cfg.InUseFor)
}

// penalize puts node into (longer) backoff.
func (w *Wallet) penalize(node peer.ID, why error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.cfg.Now()
	b := w.backoff[node]
	if b == nil {
		if len(w.backoff) >= maxTrackedNodes {
			for n, bo := range w.backoff {
				if bo.until.Before(now) {
					delete(w.backoff, n)
				}
			}
		}
		b = &backoff{}
		w.backoff[node] = b
	}
	b.delay = min(max(2*b.delay, w.cfg.BackoffMin), w.cfg.BackoffMax)
	b.until = now.Add(b.delay)
	w.log.Info("node in backoff", "node", node, "for", b.delay, "why", why)
}

func (w *Wallet) inBackoff(node peer.ID) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.backoff[node]
	return b != nil && w.cfg.Now().Before(b.until)
}

// forgive resets node's backoff after a clean purchase.
func (w *Wallet) forgive(node peer.ID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.backoff, node)
}

// Holds reports whether the wallet holds spendable vouchers of node worth
// at least sats, from a snapshot refreshed after every purchase, reserve
// and settlement (cheap: path selection asks it for every candidate).
func (w *Wallet) Holds(node peer.ID, sats uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.held[node] >= max(sats, 1)
}

// refreshHeld rebuilds the snapshot Holds reads.
func (w *Wallet) refreshHeld() {
	bals, err := w.Balances()
	if err != nil {
		w.log.Warn("wallet balances", "err", err)
		return
	}
	held := make(map[peer.ID]uint64, len(bals))
	for n, b := range bals {
		if b.Available > 0 {
			held[n] = b.Available
		}
	}
	w.mu.Lock()
	w.held = held
	w.mu.Unlock()
}

// newRand returns a generator seeded from crypto/rand: refill times must
// not be predictable from outside.
func newRand() *rand.Rand {
	var seed [32]byte
	crand.Read(seed[:])
	return rand.New(rand.NewChaCha8(seed))
}

// Balances returns every node's balance.
func (w *Wallet) Balances() (map[peer.ID]Balance, error) {
	now := w.cfg.Now()
	out := map[peer.ID]Balance{}
	err := w.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketVouchers).ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(tx.Bucket(bucketVouchers), k, &r); err != nil {
				return err
			}
			b := out[r.Node]
			switch r.State {
			case VoucherSigned:
				if now.Before(r.RedeemUntil) {
					b.Available += r.Amount
					if r.Amount == 1 {
						b.OneSat++
					}
				} else {
					b.Expired += r.Amount
				}
				b.Vouchers++
			case VoucherReserved, VoucherUnsure:
				b.Reserved += r.Amount
				b.Vouchers++
			case VoucherQuoted, VoucherPaid:
				b.Pending += r.Amount
				if r.Amount == 1 {
					b.OneSat++
				}
			case VoucherSpent:
				b.Spent += r.Amount
			default:
				return nil
			}
			out[r.Node] = b
			return nil
		})
	})
	return out, err
}

// BudgetUsed returns the sats committed to purchases in the last 24 hours
// (quoted, paid or done, each at amount plus fee limit; expired purchases
// do not count) and the limit.
func (w *Wallet) BudgetUsed() (usedSat, limitSat uint64, err error) {
	err = w.db.View(func(tx *bolt.Tx) error {
		usedSat, err = w.budgetUsedTx(tx)
		return err
	})
	return usedSat, w.cfg.DailyBudgetSat, err
}

func (w *Wallet) budgetUsedTx(tx *bolt.Tx) (uint64, error) {
	since := w.cfg.Now().Add(-budgetWindow)
	var used uint64
	b := tx.Bucket(bucketPurchases)
	err := b.ForEach(func(k, _ []byte) error {
		var r purchaseRecord
		if _, err := getJSON(b, k, &r); err != nil {
			return err
		}
		if r.State != PurchaseExpired && r.Created.After(since) {
			used += r.cost()
		}
		return nil
	})
	return used, err
}

// RecentPurchases returns up to n purchases, newest first.
func (w *Wallet) RecentPurchases(n int) ([]Purchase, error) {
	var out []Purchase
	err := w.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPurchases)
		return b.ForEach(func(k, _ []byte) error {
			var r purchaseRecord
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			out = append(out, r.public(k))
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Purchase) int { return b.Created.Compare(a.Created) })
	if n >= 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Reserve takes signed, unexpired vouchers of node worth at least sats
// (largest first, then the smallest that covers the rest) and marks them
// reserved. The caller presents them and then calls MarkSpent or Release.
// It fails with ErrInsufficient if the node's balance is short; nothing is
// bought then (automatic purchase refills at its own random times).
// Reserving marks node as in use.
func (w *Wallet) Reserve(node peer.ID, sats uint64) ([]voucher.Voucher, error) {
	return w.reserve(node, sats, false)
}

// BulkMinSat is the smallest voucher a bulk reservation (ReserveBulk)
// takes: 4 sats. Smaller ones are kept for handshake prepays (a few sats
// each, PROTOCOL.md §5.3), which they pay exactly; what a top-up pays
// beyond what a circuit uses is credited to it, but what a prepay pays
// beyond is lost when a short circuit ends.
const BulkMinSat = 4

// ReserveBulk is Reserve for a payment whose amount may be rounded down
// (a top-up: paying a little less only brings the next one sooner): it
// takes vouchers of at least BulkMinSat sats, largest first, worth at
// most sats, and leaves the 1- to 3-sat vouchers for prepays. If those
// make nothing, or fewer than half of sats, it is Reserve.
func (w *Wallet) ReserveBulk(node peer.ID, sats uint64) ([]voucher.Voucher, error) {
	if sats >= 2*BulkMinSat {
		vs, err := w.reserve(node, sats, true)
		if err == nil {
			return vs, nil
		}
		if !errors.Is(err, ErrInsufficient) {
			return nil, err
		}
	}
	return w.reserve(node, sats, false)
}

// reserve is Reserve, or with bulk ReserveBulk's pick: vouchers of at
// least BulkMinSat worth at most sats and at least half of it, or
// ErrInsufficient.
func (w *Wallet) reserve(node peer.ID, sats uint64, bulk bool) ([]voucher.Voucher, error) {
	w.Track(node)
	now := w.cfg.Now()
	var out []voucher.Voucher
	err := w.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVouchers)
		type cand struct {
			key []byte
			rec voucherRecord
		}
		var cands []cand
		var total uint64
		err := b.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			if r.Node == node && r.State == VoucherSigned && now.Before(r.RedeemUntil) {
				cands = append(cands, cand{key: append([]byte(nil), k...), rec: r})
				total += r.Amount
			}
			return nil
		})
		if err != nil {
			return err
		}
		if total < sats || sats == 0 {
			return ErrInsufficient
		}
		slices.SortFunc(cands, func(a, b cand) int {
			if a.rec.Amount != b.rec.Amount {
				if a.rec.Amount > b.rec.Amount {
					return -1
				}
				return 1
			}
			return bytes.Compare(a.key, b.key)
		})
		var picked []cand
		rest := sats
		used := make([]bool, len(cands))
		for i, c := range cands {
			if c.rec.Amount <= rest && (!bulk || c.rec.Amount >= BulkMinSat) {
				picked, used[i] = append(picked, c), true
				rest -= c.rec.Amount
			}
		}
		if bulk {
			if 2*rest > sats {
				return ErrInsufficient
			}
			rest = 0 // rounded down
		}
		if rest > 0 { // the smallest unused voucher that covers the rest
			for i := len(cands) - 1; i >= 0; i-- {
				if !used[i] && cands[i].rec.Amount >= rest {
					picked, rest = append(picked, cands[i]), 0
					break
				}
			}
		}
		if rest > 0 {
			return ErrInsufficient
		}
		for _, c := range picked {
			c.rec.State, c.rec.Updated = VoucherReserved, now
			if err := putJSON(b, c.key, &c.rec); err != nil {
				return err
			}
			out = append(out, c.rec.voucher())
		}
		return nil
	})
	if err != nil {
		if err == ErrInsufficient {
			return nil, fmt.Errorf("reserve %d sats: %w", sats, ErrInsufficient)
		}
		return nil, fmt.Errorf("reserve: %w", err)
	}
	var value uint64
	for _, v := range out {
		value += v.Amount
	}
	w.noteUse(node, value, now)
	w.refreshHeld()
	return out, nil
}

// MarkSpent records that the node accepted the reserved vouchers.
func (w *Wallet) MarkSpent(vs []voucher.Voucher) error {
	return w.settleReserved(vs, VoucherSpent)
}

// Release returns reserved vouchers that were never presented (or that the
// node provably did not take) to the spendable state.
func (w *Wallet) Release(vs []voucher.Voucher) error {
	return w.settleReserved(vs, VoucherSigned)
}

func (w *Wallet) settleReserved(vs []voucher.Voucher, to VoucherState) error {
	now := w.cfg.Now()
	defer w.refreshHeld()
	return w.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVouchers)
		for i := range vs {
			id := vs[i].SpendID()
			var r voucherRecord
			ok, err := getJSON(b, id[:], &r)
			if err != nil {
				return err
			}
			if !ok || r.State != VoucherReserved || r.Keyset != vs[i].Keyset {
				return fmt.Errorf("%w: %x", ErrUnknownVoucher, id[:4])
			}
			r.State, r.Updated = to, now
			if err := putJSON(b, id[:], &r); err != nil {
				return err
			}
		}
		return nil
	})
}

// ReserveBatch reserves vouchers worth at least sats, as Reserve does, and
// encodes them as one redemption batch (a TOPUP payload, VOUCHERS.md
// §2.1). If they do not fit one batch they are released and the call fails
// with voucher.ErrAmount: ask for less.
func (w *Wallet) ReserveBatch(node peer.ID, sats uint64) ([]byte, []voucher.Voucher, error) {
	return w.reserveBatch(node, sats, w.Reserve)
}

// ReserveBulkBatch is ReserveBatch with ReserveBulk: the batch may be
// worth less than sats (at least half), never more.
func (w *Wallet) ReserveBulkBatch(node peer.ID, sats uint64) ([]byte, []voucher.Voucher, error) {
	return w.reserveBatch(node, sats, w.ReserveBulk)
}

func (w *Wallet) reserveBatch(node peer.ID, sats uint64, reserve func(peer.ID, uint64) ([]voucher.Voucher, error)) ([]byte, []voucher.Voucher, error) {
	vs, err := reserve(node, sats)
	if err != nil {
		return nil, nil, err
	}
	if len(vs) > voucher.MaxVouchersPerBatch {
		if err := w.Release(vs); err != nil {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("reserve %d sats: %d vouchers: %w", sats, len(vs), voucher.ErrAmount)
	}
	payload, err := voucher.EncodeBatch(vs)
	if err != nil {
		w.Release(vs)
		return nil, nil, err
	}
	return payload, vs, nil
}

// Prune deletes finished records older than Config.Retention, and keyset
// sightings that no longer count (pruneSeen), and returns how many it
// deleted. Unfinished purchases and spendable or reserved vouchers are
// never deleted. The background goroutine calls it every
// AutoBuyInterval.
func (w *Wallet) Prune() (int, error) {
	cutoff := w.cfg.Now().Add(-w.cfg.Retention)
	n := 0
	err := w.db.Update(func(tx *bolt.Tx) error {
		vb, pb := tx.Bucket(bucketVouchers), tx.Bucket(bucketPurchases)
		var dead [][]byte
		err := vb.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(vb, k, &r); err != nil {
				return err
			}
			finished := r.State == VoucherSpent || r.State == VoucherVoid || r.State == VoucherSwapped
			if finished && r.Updated.Before(cutoff) || r.State == VoucherSigned && r.RedeemUntil.Before(cutoff) {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := vb.Delete(k); err != nil {
				return err
			}
		}
		n += len(dead)
		dead = dead[:0]
		err = pb.ForEach(func(k, _ []byte) error {
			var r purchaseRecord
			if _, err := getJSON(pb, k, &r); err != nil {
				return err
			}
			if (r.State == PurchaseDone || r.State == PurchaseExpired) && r.Created.Before(cutoff) {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := pb.Delete(k); err != nil {
				return err
			}
		}
		n += len(dead)
		dead = dead[:0]
		sb := tx.Bucket(bucketSwaps)
		err = sb.ForEach(func(k, _ []byte) error {
			var r swapRecord
			if _, err := getJSON(sb, k, &r); err != nil {
				return err
			}
			if r.State != SwapPending && r.Updated.Before(cutoff) {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := sb.Delete(k); err != nil {
				return err
			}
		}
		n += len(dead)
		seen, err := pruneSeen(tx, w.cfg.Now(), w.cfg.NewKeysetPeriod)
		n += seen
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("wallet: prune: %w", err)
	}
	return n, nil
}
