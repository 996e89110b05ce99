package wallet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// quoteExpirySlack is how far the invoice's expiry may be from the
// quote's (the node stamps them at slightly different moments).
const quoteExpirySlack = time.Minute

// Buy buys sats worth of vouchers from node, using what the node publishes
// (Config.Published) for its payee, keysets and price. It returns once the
// vouchers are stored, or with an error; a purchase that got as far as a
// stored quote is kept and finished by Resume (ErrPayment, ErrNotPaid,
// stream failures), so retrying Buy after an error buys again — call
// Resume to finish instead.
func (w *Wallet) Buy(ctx context.Context, node peer.ID, sats uint64) (Purchase, error) {
	if w.cfg.Published == nil {
		return Purchase{}, errors.New("wallet: buy: Config.Published not set")
	}
	pub, err := w.cfg.Published(ctx, node)
	if err != nil {
		return Purchase{}, fmt.Errorf("buy: published record of %s: %w", node, err)
	}
	return w.BuyFrom(ctx, node, pub, sats)
}

// BuyFrom is Buy with the node's published record given by the caller.
func (w *Wallet) BuyFrom(ctx context.Context, node peer.ID, pub Published, sats uint64) (Purchase, error) {
	if w.cfg.DecodeInvoice == nil || w.cfg.PayInvoice == nil {
		return Purchase{}, errors.New("wallet: buy: DecodeInvoice and PayInvoice must be set")
	}
	if w.inBackoff(node) {
		return Purchase{}, fmt.Errorf("buy from %s: %w", node, ErrBackoff)
	}
	now := w.cfg.Now()
	// Trust rule 1: only published keysets, not too many mintable at once,
	// none short-lived, few new ones per period (keysets.go).
	mintable, err := w.checkKeysets(node, pub.Keysets, now)
	if err != nil {
		if isKeysetRefusal(err) {
			w.penalize(node, err)
		}
		return Purchase{}, err
	}
	if pub.PriceMsatPerMB > w.cfg.MaxPriceMsatPerMB {
		return Purchase{}, fmt.Errorf("buy: advertised %d msat/MB: %w", pub.PriceMsatPerMB, ErrPrice)
	}
	if err := w.checkBudget(sats); err != nil {
		return Purchase{}, err
	}

	q, err := w.requestQuote(ctx, node, sats)
	if err != nil {
		if errors.Is(err, errTransport) {
			w.penalize(node, err)
		}
		return Purchase{}, fmt.Errorf("buy: %w", err)
	}
	var ks *voucher.Keyset
	for _, k := range mintable {
		if k.ID() == q.Keyset {
			ks = k
		}
	}
	payee := strings.ToLower(pub.Payee)
	switch {
	case ks == nil:
		err = fmt.Errorf("quoted keyset %s: %w", q.Keyset, ErrUnpublishedKeyset)
	case q.Amount != sats:
		err = fmt.Errorf("%w: quote for %d sats, asked %d", ErrQuoteMismatch, q.Amount, sats)
	case hex.EncodeToString(q.Payee[:]) != payee:
		err = fmt.Errorf("%w: quoted payee is not the advertised one", ErrQuoteMismatch)
	case q.PriceMsatPerMB > w.cfg.MaxPriceMsatPerMB:
		err = fmt.Errorf("quoted %d msat/MB: %w", q.PriceMsatPerMB, ErrPrice)
	}
	if err != nil {
		w.penalize(node, err)
		return Purchase{}, fmt.Errorf("buy: %w", err)
	}
	// Trust rule 2: the invoice must be the quote's, checked before paying.
	inv, err := w.cfg.DecodeInvoice(ctx, q.PayReq)
	if err != nil {
		w.penalize(node, err)
		return Purchase{}, fmt.Errorf("buy: %w: decode: %v", ErrInvoiceMismatch, err)
	}
	switch {
	case inv.AmountSat <= 0 || uint64(inv.AmountSat) != sats:
		err = fmt.Errorf("%w: invoice for %d sats, quote for %d", ErrInvoiceMismatch, inv.AmountSat, sats)
	case inv.AmountMsat != 0 && inv.AmountMsat != inv.AmountSat*1000:
		err = fmt.Errorf("%w: invoice for %d msat, quote for %d sats", ErrInvoiceMismatch, inv.AmountMsat, sats)
	case strings.ToLower(inv.Payee) != payee:
		err = fmt.Errorf("%w: invoice payee is not the advertised one", ErrInvoiceMismatch)
	case inv.PayHash != q.PayHash:
		err = fmt.Errorf("%w: payment hash", ErrInvoiceMismatch)
	case inv.Expiry.Sub(now) < w.cfg.MinInvoiceLeft:
		err = fmt.Errorf("%w: invoice expires too soon", ErrInvoiceMismatch)
	case inv.Expiry.Sub(now) > w.cfg.MaxInvoiceExpiry:
		err = fmt.Errorf("%w: invoice expires too late", ErrInvoiceMismatch)
	case inv.Expiry.Sub(q.Expires).Abs() > quoteExpirySlack:
		err = fmt.Errorf("%w: invoice expiry differs from the quote's", ErrInvoiceMismatch)
	}
	if err != nil {
		w.penalize(node, err)
		return Purchase{}, fmt.Errorf("buy: %w", err)
	}
	w.mu.Lock()
	if ks.Amounts()[0] != 1 {
		w.noOneSat[node] = true
	} else {
		delete(w.noOneSat, node)
	}
	w.mu.Unlock()
	amounts, err := splitLadder(ks, sats)
	if err != nil {
		return Purchase{}, fmt.Errorf("buy: %w", err)
	}

	rec := purchaseRecord{
		State: PurchaseQuoted, Node: node, Amount: sats, Keyset: ks.ID(), Price: q.PriceMsatPerMB,
		Created: now, Expires: inv.Expiry, PayHash: q.PayHash, PayReq: q.PayReq,
		FeeLimitSat: w.feeLimit(sats),
	}
	vrecs := make([]voucherRecord, len(amounts))
	for i, a := range amounts {
		var seed voucher.Seed
		rand.Read(seed[:])
		vrecs[i] = voucherRecord{State: VoucherQuoted, Node: node, Keyset: ks.ID(), Amount: a, Seed: seed,
			Quote: q.ID, RedeemUntil: ks.RedeemUntil(), Updated: now}
		v := vrecs[i].voucher()
		rec.Vouchers = append(rec.Vouchers, v.SpendID())
	}
	if err := checkReproducible(ks, vrecs); err != nil {
		return Purchase{}, err
	}
	if err := w.storeQuote(q.ID, &rec, vrecs, ks); err != nil {
		return Purchase{}, err
	}
	if w.afterQuote != nil {
		if err := w.afterQuote(); err != nil {
			return Purchase{}, err
		}
	}
	return w.advance(ctx, q.ID[:])
}

func (w *Wallet) feeLimit(sats uint64) int64 {
	return max(w.cfg.MinFeeLimitSat, int64(sats*w.cfg.FeeLimitPPM/1_000_000))
}

func (w *Wallet) checkBudget(sats uint64) error {
	used, limit, err := w.BudgetUsed()
	if err != nil {
		return fmt.Errorf("buy: %w", err)
	}
	if used+sats+uint64(w.feeLimit(sats)) > limit {
		return fmt.Errorf("buy %d sats with %d of %d used: %w", sats, used, limit, ErrBudget)
	}
	return nil
}

// storeQuote persists the quote, its voucher seeds and the keyset in one
// transaction, re-checking the budget inside it.
func (w *Wallet) storeQuote(id [voucher.QuoteIDSize]byte, rec *purchaseRecord, vrecs []voucherRecord, ks *voucher.Keyset) error {
	w.buyMu.Lock()
	defer w.buyMu.Unlock()
	ksEnc, _ := ks.MarshalBinary()
	err := w.db.Update(func(tx *bolt.Tx) error {
		used, err := w.budgetUsedTx(tx)
		if err != nil {
			return err
		}
		if used+rec.cost() > w.cfg.DailyBudgetSat {
			return fmt.Errorf("buy %d sats with %d of %d used: %w", rec.Amount, used, w.cfg.DailyBudgetSat, ErrBudget)
		}
		pb := tx.Bucket(bucketPurchases)
		if pb.Get(id[:]) != nil {
			return fmt.Errorf("%w: duplicate quote id", ErrQuoteMismatch)
		}
		if err := putJSON(pb, id[:], rec); err != nil {
			return err
		}
		vb := tx.Bucket(bucketVouchers)
		for i := range vrecs {
			if err := putJSON(vb, rec.Vouchers[i][:], &vrecs[i]); err != nil {
				return err
			}
		}
		kid := ks.ID()
		return tx.Bucket(bucketKeysets).Put(kid[:], ksEnc)
	})
	if err != nil && !errors.Is(err, ErrBudget) && !errors.Is(err, ErrQuoteMismatch) {
		return fmt.Errorf("buy: store quote: %w", err)
	}
	return err
}

// Resume finishes every unfinished purchase (quoted or paid) and returns
// the first error. Start calls it; the CLI may call it too.
func (w *Wallet) Resume(ctx context.Context) error {
	var ids [][]byte
	err := w.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPurchases)
		return b.ForEach(func(k, _ []byte) error {
			var r purchaseRecord
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			if r.State == PurchaseQuoted || r.State == PurchasePaid {
				ids = append(ids, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	var first error
	for _, id := range ids {
		if _, err := w.advance(ctx, id); err != nil && first == nil && !errors.Is(err, ErrInProgress) {
			first = err
		}
	}
	return first
}

func (w *Wallet) loadPurchase(id []byte) (*purchaseRecord, error) {
	var r purchaseRecord
	err := w.db.View(func(tx *bolt.Tx) error {
		ok, err := getJSON(tx.Bucket(bucketPurchases), id, &r)
		if err == nil && !ok {
			err = fmt.Errorf("wallet: no purchase %x", id)
		}
		return err
	})
	return &r, err
}

// setState moves the purchase and its vouchers to new states in one
// transaction; sigs, if non-nil, are the unblinded signatures.
func (w *Wallet) setState(id []byte, ps PurchaseState, vs VoucherState, preimage *[32]byte, sigs [][]byte) error {
	now := w.cfg.Now()
	return w.db.Update(func(tx *bolt.Tx) error {
		pb, vb := tx.Bucket(bucketPurchases), tx.Bucket(bucketVouchers)
		var r purchaseRecord
		if _, err := getJSON(pb, id, &r); err != nil {
			return err
		}
		r.State = ps
		if preimage != nil {
			r.Preimage = *preimage
		}
		if err := putJSON(pb, id, &r); err != nil {
			return err
		}
		for i, vid := range r.Vouchers {
			var v voucherRecord
			if _, err := getJSON(vb, vid[:], &v); err != nil {
				return err
			}
			v.State, v.Updated = vs, now
			if sigs != nil {
				v.Sig = sigs[i]
			}
			if err := putJSON(vb, vid[:], &v); err != nil {
				return err
			}
		}
		return nil
	})
}

// advance moves one purchase forward until it is done, expired or stuck
// (the error says why). Every transition is stored before the next step.
func (w *Wallet) advance(ctx context.Context, id []byte) (Purchase, error) {
	key := string(id)
	w.mu.Lock()
	if w.inflight[key] {
		w.mu.Unlock()
		return Purchase{}, ErrInProgress
	}
	w.inflight[key] = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.inflight, key)
		w.mu.Unlock()
	}()

	for {
		r, err := w.loadPurchase(id)
		if err != nil {
			return Purchase{}, err
		}
		switch r.State {
		case PurchaseDone, PurchaseExpired:
			if r.State == PurchaseExpired {
				return r.public(id), fmt.Errorf("purchase %x: %w", id, ErrInvoiceExpired)
			}
			return r.public(id), nil

		case PurchaseQuoted:
			if now := w.cfg.Now(); !now.Before(r.Expires) {
				// Too late to pay. Whether an earlier attempt paid is the
				// node's to say: try to mint. A payment in flight at expiry
				// can still settle, so "not settled" voids the purchase
				// only VoidAfter past the expiry.
				err := w.mint(ctx, id, r, false)
				if errors.Is(err, voucher.ErrNotPaid) && now.Sub(r.Expires) >= w.cfg.VoidAfter {
					if err := w.setState(id, PurchaseExpired, VoucherVoid, nil, nil); err != nil {
						return r.public(id), err
					}
					continue
				}
				if err != nil {
					return r.public(id), err
				}
				continue
			}
			preimage, err := w.cfg.PayInvoice(ctx, r.PayReq, r.FeeLimitSat)
			if err != nil {
				return r.public(id), fmt.Errorf("purchase %x: %w: %v", id, ErrPayment, err)
			}
			if sha256.Sum256(preimage[:]) != r.PayHash {
				return r.public(id), fmt.Errorf("purchase %x: %w: preimage does not match payment hash", id, ErrPayment)
			}
			if err := w.setState(id, PurchasePaid, VoucherPaid, &preimage, nil); err != nil {
				return r.public(id), fmt.Errorf("purchase: store payment: %w", err)
			}
			if w.afterPay != nil {
				if err := w.afterPay(); err != nil {
					return r.public(id), err
				}
			}

		case PurchasePaid:
			if err := w.mint(ctx, id, r, true); err != nil {
				return r.public(id), err
			}
		default:
			return r.public(id), fmt.Errorf("wallet: purchase %x in state %v", id, r.State)
		}
	}
}

// mint rebuilds the blinded messages from the stored seeds, sends the
// mint request, unblinds and verifies the signatures and stores the
// vouchers as signed.
//
// With waitSettle the request is retried while the node reports the
// invoice unsettled (for up to SettleWait); without, one "not settled"
// answer is final.
func (w *Wallet) mint(ctx context.Context, id []byte, r *purchaseRecord, waitSettle bool) error {
	var ks *voucher.Keyset
	var vrecs []voucherRecord
	err := w.db.View(func(tx *bolt.Tx) error {
		enc := tx.Bucket(bucketKeysets).Get(r.Keyset[:])
		if enc == nil {
			return fmt.Errorf("wallet: keyset %s missing", r.Keyset)
		}
		var err error
		if ks, err = voucher.ParseKeyset(enc); err != nil {
			return err
		}
		for _, vid := range r.Vouchers {
			var v voucherRecord
			if _, err := getJSON(tx.Bucket(bucketVouchers), vid[:], &v); err != nil {
				return err
			}
			vrecs = append(vrecs, v)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("purchase: load: %w", err)
	}
	req := voucher.MintRequest{Keyset: r.Keyset}
	copy(req.Quote[:], id)
	blinded := make([]*voucher.Blinded, len(vrecs))
	for i, v := range vrecs {
		key, ok := ks.Key(v.Amount)
		if !ok {
			return fmt.Errorf("purchase: %w", voucher.ErrDenomination)
		}
		if blinded[i], err = voucher.Blind(v.Seed, v.Amount, key); err != nil {
			return fmt.Errorf("purchase: %w", err)
		}
		req.Blinded = append(req.Blinded, voucher.BlindedMsg{Amount: v.Amount, Msg: blinded[i].Msg})
	}
	resp, err := w.requestMint(ctx, r.Node, &req, waitSettle)
	if err != nil {
		if errors.Is(err, errTransport) || errors.Is(err, voucher.ErrQuoteIssued) || errors.Is(err, voucher.ErrQuoteUnknown) {
			w.penalize(r.Node, err)
		}
		return fmt.Errorf("purchase %x: %w", id, err)
	}
	if w.afterMintResponse != nil {
		if err := w.afterMintResponse(); err != nil {
			return err
		}
	}
	sigs := make([][]byte, len(blinded))
	for i, b := range blinded {
		v, err := b.Finalize(r.Keyset, resp.Sigs[i])
		if err != nil {
			w.penalize(r.Node, err)
			return fmt.Errorf("purchase %x: voucher %d: %w", id, i, err)
		}
		sigs[i] = v.Sig
	}
	if err := w.setState(id, PurchaseDone, VoucherSigned, nil, sigs); err != nil {
		return fmt.Errorf("purchase: store vouchers: %w", err)
	}
	w.forgive(r.Node)
	w.refreshHeld()
	w.log.Info("vouchers bought", "node", r.Node, "sats", r.Amount, "vouchers", len(sigs))
	return nil
}

// checkReproducible blinds every voucher twice and compares, before
// anything is paid. Crash recovery re-derives the mint request from the
// stored seeds; if blinding ever stopped being a function of the seed (a
// change in a dependency), a resumed purchase would present different
// messages and the node would refuse them, so refuse to start instead.
func checkReproducible(ks *voucher.Keyset, vrecs []voucherRecord) error {
	for _, v := range vrecs {
		key, ok := ks.Key(v.Amount)
		if !ok {
			return fmt.Errorf("buy: %w", voucher.ErrDenomination)
		}
		a, err := voucher.Blind(v.Seed, v.Amount, key)
		if err != nil {
			return fmt.Errorf("buy: %w", err)
		}
		b, err := voucher.Blind(v.Seed, v.Amount, key)
		if err != nil {
			return fmt.Errorf("buy: %w", err)
		}
		if !bytes.Equal(a.Msg, b.Msg) {
			return errors.New("wallet: buy: blinding is not reproducible from the seed; refusing to pay")
		}
	}
	return nil
}

// ladderCopies is how many vouchers of each denomination below the cap a
// purchase holds before the rest is split into the cap.
const ladderCopies = 2

// splitLadder splits sats into the keyset's denominations for spending
// with little change: no voucher above a cap, the smallest denomination
// for which the split fits voucher.MaxVouchersPerMint; up to ladderCopies
// vouchers of each denomination below the cap, then as many of the cap
// as fit, then the remainder largest first. A TOPUP then finds a sum close
// to what it needs in a few vouchers: an overshoot is credited to the
// circuit and lowers its next top-up, but what is left when the circuit
// ends is paid for nothing, so it must stay small (at most one voucher of
// the cap). Then the voucher slots left (of voucher.MaxVouchersPerMint)
// are filled by breaking vouchers of the cap into vouchers of the smallest
// denomination (moreSmallest): every new circuit prepays each paid hop a
// few sats in its handshake (payment.PrepayBytes), which small vouchers
// pay exactly; a larger voucher there is overshoot paid for nothing when
// a short circuit ends.
// 300 sats: cap 8, 64 vouchers, 26 of 1 sat; 1500 sats: cap 32, 58
// vouchers, 2 of 1 sat.
func splitLadder(ks *voucher.Keyset, sats uint64) ([]uint64, error) {
	out, err := splitCapped(ks, sats)
	if err != nil {
		return nil, err
	}
	return moreSmallest(out, ks.Amounts()[0], voucher.MaxVouchersPerMint), nil
}

// moreSmallest breaks vouchers of out's largest denomination, one at a
// time, into vouchers of denomination smallest while the split stays
// within max vouchers, and returns the split in ascending order (Buy
// stores it with its seeds, so the order is fixed from then on). The sum
// is unchanged; every
// denomination is a power of two, so each one divides the larger ones.
func moreSmallest(out []uint64, smallest uint64, max int) []uint64 {
	slices.Sort(out)
	for len(out) > 0 {
		top := out[len(out)-1]
		if top <= smallest || uint64(max-len(out)) < top/smallest-1 {
			break
		}
		out = out[:len(out)-1]
		for range top / smallest {
			out = append(out, smallest)
		}
		slices.Sort(out)
	}
	return out
}

// splitCapped is splitLadder's ladder before moreSmallest.
func splitCapped(ks *voucher.Keyset, sats uint64) ([]uint64, error) {
	amounts := ks.Amounts() // ascending
	for ci, cap := range amounts {
		var out []uint64
		rest := sats
		for _, d := range amounts[:ci] {
			for range ladderCopies {
				if rest >= d {
					out = append(out, d)
					rest -= d
				}
			}
		}
		n := rest / cap
		if uint64(len(out))+n > voucher.MaxVouchersPerMint {
			continue
		}
		for range n {
			out = append(out, cap)
		}
		rest -= n * cap
		if rest > 0 {
			more, err := ks.Split(rest, voucher.MaxVouchersPerMint-len(out))
			if err != nil {
				continue
			}
			out = append(out, more...)
		}
		return out, nil
	}
	return ks.Split(sats, voucher.MaxVouchersPerMint)
}
