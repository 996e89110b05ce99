package wallet

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/co-infuse/co-infuse/voucher"
)

// Settlement of unknown outcomes (VOUCHERS.md §3.10, after Cashu NUT-03).
// A voucher offered in a TOPUP that got no answer (a timeout, a closed
// circuit) may or may not have been redeemed, and a redemption may still
// be queued at the hop. Unsure parks it as VoucherUnsure, durably, where
// Reserve never takes it; Settle claims it back by swapping it at the
// node's mint for fresh vouchers of the same value. Once the mint has
// answered a swap, a late redemption of the old vouchers is refused as
// spent; if the hop redeemed first, the mint says so and the wallet marks
// them spent. Vouchers still reserved when the wallet starts were handed
// out by a run that crashed: Start parks them as unsure too. So no voucher
// is offered again before its fate is settled, and none is lost.
//
// Check-state (§3.9) stays in the protocol and the mint, but the wallet no
// longer uses it: its "unspent" was only true when the mint answered.

// bucketSwaps holds the wallet's swaps: request id → swapRecord.
var bucketSwaps = []byte("swaps")

// SwapState is where a swap stands.
type SwapState uint8

// Swap states.
const (
	// SwapPending: request and output seeds stored; the request may or
	// may not have reached the mint. Settle re-sends it as it is.
	SwapPending SwapState = 1
	// SwapDone: outputs signed and stored, inputs VoucherSwapped.
	SwapDone SwapState = 2
	// SwapAbandoned: the mint spent and signed nothing under this id
	// (some inputs were spent, or it refused); outputs void. The inputs
	// still unsure go into a new swap.
	SwapAbandoned SwapState = 3
	// SwapFailed: the mint answered with signatures that do not verify:
	// it took the inputs and gave nothing usable (inputs spent, outputs
	// void, node in backoff).
	SwapFailed SwapState = 4
)

// swapRecord is a swap as stored under its request id.
type swapRecord struct {
	State   SwapState
	Node    peer.ID
	Keyset  voucher.KeysetID // the outputs' keyset (stored in bucketKeysets)
	Inputs  [][32]byte       // keys of the unsure input vouchers, in request order
	Outputs [][32]byte       // keys of the VoucherSwapOut records, in request order
	Created time.Time
	Updated time.Time
}

// Unsure records that reserved vouchers were offered and their outcome is
// unknown; they are settled by Settle (the background goroutine runs it
// every round) before any is offered again.
func (w *Wallet) Unsure(vs []voucher.Voucher) error {
	return w.settleReserved(vs, VoucherUnsure)
}

// parkReserved moves every reserved voucher to VoucherUnsure: at start,
// nothing is being offered, so a reserved voucher is a crash's leftover.
func (w *Wallet) parkReserved() (int, error) {
	n := 0
	now := w.cfg.Now()
	err := w.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVouchers)
		var keys [][]byte
		err := b.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			if r.State == VoucherReserved {
				keys = append(keys, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			var r voucherRecord
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			r.State, r.Updated = VoucherUnsure, now
			if err := putJSON(b, k, &r); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	return n, err
}

// Settle settles every unsure voucher it can by swapping (VOUCHERS.md
// §3.10): first it re-sends each pending swap unchanged (a crash or a
// lost answer), then it swaps the unsure vouchers no swap holds, node by
// node, over Config.Dial like a purchase. It returns how many unsure
// vouchers it settled (swapped for new vouchers, or found spent) and the
// first error. Vouchers of a node that cannot be reached, or whose mint
// refuses, stay unsure for the next call; a pending swap stays pending
// until its mint answers it. Calls are serialised.
func (w *Wallet) Settle(ctx context.Context) (int, error) {
	w.settleMu.Lock()
	defer w.settleMu.Unlock()
	nodes := map[peer.ID]bool{}
	err := w.db.View(func(tx *bolt.Tx) error {
		vb, sb := tx.Bucket(bucketVouchers), tx.Bucket(bucketSwaps)
		err := vb.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(vb, k, &r); err != nil {
				return err
			}
			if r.State == VoucherUnsure {
				nodes[r.Node] = true
			}
			return nil
		})
		if err != nil {
			return err
		}
		return sb.ForEach(func(k, _ []byte) error {
			var s swapRecord
			if _, err := getJSON(sb, k, &s); err != nil {
				return err
			}
			if s.State == SwapPending {
				nodes[s.Node] = true
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("settle: %w", err)
	}
	settled := 0
	var first error
	for node := range nodes {
		n, err := w.settleNode(ctx, node)
		settled += n
		if err != nil && first == nil {
			first = fmt.Errorf("settle with %s: %w", node, err)
		}
	}
	if settled > 0 {
		w.refreshHeld()
		w.log.Info("vouchers of unknown outcome settled", "vouchers", settled)
	}
	return settled, first
}

// settleNode runs node's pending swap, if any, then new swaps of its
// unsure vouchers until none is left or one fails. Each round either
// settles at least one voucher or returns an error, so it ends.
func (w *Wallet) settleNode(ctx context.Context, node peer.ID) (int, error) {
	if err := w.expireUnsure(node); err != nil {
		return 0, err
	}
	settled := 0
	for ctx.Err() == nil {
		id, ok, err := w.pendingSwap(node)
		if err != nil {
			return settled, err
		}
		if !ok {
			if id, ok, err = w.newSwap(ctx, node); err != nil || !ok {
				return settled, err
			}
		}
		n, err := w.runSwap(ctx, id)
		settled += n
		if err != nil {
			return settled, err
		}
	}
	return settled, ctx.Err()
}

// expireUnsure moves node's unsure vouchers that no longer redeem and
// that no pending swap holds back to VoucherSigned, where Balances counts
// them as expired and Prune deletes them after Retention: whatever
// happened to them, no mint takes them any more, so there is nothing to
// claim.
func (w *Wallet) expireUnsure(node peer.ID) error {
	now := w.cfg.Now()
	n := 0
	err := w.db.Update(func(tx *bolt.Tx) error {
		held, err := pendingInputs(tx)
		if err != nil {
			return err
		}
		vb := tx.Bucket(bucketVouchers)
		var keys [][]byte
		err = vb.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(vb, k, &r); err != nil {
				return err
			}
			if r.State == VoucherUnsure && r.Node == node && !now.Before(r.RedeemUntil) && !held[string(k)] {
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			var r voucherRecord
			if _, err := getJSON(vb, k, &r); err != nil {
				return err
			}
			r.State, r.Updated = VoucherSigned, now
			if err := putJSON(vb, k, &r); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return fmt.Errorf("settle: expire: %w", err)
	}
	if n > 0 {
		w.log.Info("unsure vouchers expired before they were settled", "node", node, "vouchers", n)
	}
	return nil
}

// pendingSwap returns the id of one of node's pending swaps.
func (w *Wallet) pendingSwap(node peer.ID) (id []byte, ok bool, err error) {
	err = w.db.View(func(tx *bolt.Tx) error {
		sb := tx.Bucket(bucketSwaps)
		return sb.ForEach(func(k, _ []byte) error {
			var s swapRecord
			if _, err := getJSON(sb, k, &s); err != nil {
				return err
			}
			if !ok && s.State == SwapPending && s.Node == node {
				id, ok = bytes.Clone(k), true
			}
			return nil
		})
	})
	return id, ok, err
}

// newSwap picks node's unsure vouchers that no pending swap holds and
// that still redeem (an expired voucher is worth nothing anywhere), as
// many as fit one request, splits their value into the outputs under the
// node's current published keyset (splitLadder's ladder, within the
// request's size), and stores the swap, its output seeds and the keyset in
// one transaction. ok is false when there is nothing to swap.
func (w *Wallet) newSwap(ctx context.Context, node peer.ID) (id []byte, ok bool, err error) {
	now := w.cfg.Now()
	type input struct {
		key []byte
		rec voucherRecord
	}
	var inputs []input
	err = w.db.View(func(tx *bolt.Tx) error {
		held, err := pendingInputs(tx)
		if err != nil {
			return err
		}
		vb := tx.Bucket(bucketVouchers)
		return vb.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(vb, k, &r); err != nil {
				return err
			}
			if r.State == VoucherUnsure && r.Node == node && now.Before(r.RedeemUntil) && !held[string(k)] {
				inputs = append(inputs, input{key: bytes.Clone(k), rec: r})
			}
			return nil
		})
	})
	if err != nil || len(inputs) == 0 {
		return nil, false, err
	}
	ks, err := w.swapKeyset(ctx, node, now)
	if err != nil {
		return nil, false, err
	}
	inputs = inputs[:min(len(inputs), voucher.MaxSwapInputs)]
	var amounts []uint64
	for {
		size := 1 + voucher.SwapIDSize + 1 + voucher.KeysetIDSize + 1
		var total uint64
		for _, in := range inputs {
			v := in.rec.voucher()
			size += v.EncodedLen()
			total += in.rec.Amount
		}
		amounts, err = swapSplit(ks, total, size)
		if err == nil {
			break
		}
		if len(inputs) == 1 {
			return nil, false, fmt.Errorf("swap: %w", err)
		}
		inputs = inputs[:len(inputs)/2]
	}

	rec := swapRecord{State: SwapPending, Node: node, Keyset: ks.ID(), Created: now, Updated: now}
	for _, in := range inputs {
		rec.Inputs = append(rec.Inputs, [32]byte(in.key))
	}
	outs := make([]voucherRecord, len(amounts))
	for i, a := range amounts {
		var seed voucher.Seed
		rand.Read(seed[:])
		outs[i] = voucherRecord{State: VoucherSwapOut, Node: node, Keyset: ks.ID(), Amount: a, Seed: seed,
			RedeemUntil: ks.RedeemUntil(), Updated: now}
		v := outs[i].voucher()
		rec.Outputs = append(rec.Outputs, v.SpendID())
	}
	if err := checkReproducible(ks, outs); err != nil {
		return nil, false, fmt.Errorf("swap: %w", err)
	}
	id = make([]byte, voucher.SwapIDSize)
	rand.Read(id)
	ksEnc, _ := ks.MarshalBinary()
	err = w.db.Update(func(tx *bolt.Tx) error {
		vb := tx.Bucket(bucketVouchers)
		for _, k := range rec.Inputs {
			var r voucherRecord
			if ok, err := getJSON(vb, k[:], &r); err != nil || !ok || r.State != VoucherUnsure {
				return fmt.Errorf("swap input %x no longer unsure: %w", k[:4], ErrInProgress)
			}
		}
		for i := range outs {
			if vb.Get(rec.Outputs[i][:]) != nil {
				return errors.New("wallet: swap output collides with a stored voucher")
			}
			if err := putJSON(vb, rec.Outputs[i][:], &outs[i]); err != nil {
				return err
			}
		}
		kid := ks.ID()
		if err := tx.Bucket(bucketKeysets).Put(kid[:], ksEnc); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketSwaps), id, &rec)
	})
	if err != nil {
		return nil, false, fmt.Errorf("swap: store: %w", err)
	}
	if w.afterSwapStore != nil {
		if err := w.afterSwapStore(); err != nil {
			return nil, false, err
		}
	}
	return id, true, nil
}

// pendingInputs returns the keys of the vouchers held by pending swaps.
func pendingInputs(tx *bolt.Tx) (map[string]bool, error) {
	held := map[string]bool{}
	sb := tx.Bucket(bucketSwaps)
	err := sb.ForEach(func(k, _ []byte) error {
		var s swapRecord
		if _, err := getJSON(sb, k, &s); err != nil {
			return err
		}
		if s.State == SwapPending {
			for _, in := range s.Inputs {
				held[string(in[:])] = true
			}
		}
		return nil
	})
	return held, err
}

// swapKeyset returns the keyset a swap's outputs are signed under: the
// node's published keyset that mints now and mints longest (the mint's
// current one, §1.2), after the same trust checks as a purchase (§1.3).
func (w *Wallet) swapKeyset(ctx context.Context, node peer.ID, now time.Time) (*voucher.Keyset, error) {
	if w.cfg.Published == nil {
		return nil, errors.New("wallet: swap: Config.Published not set")
	}
	pub, err := w.cfg.Published(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("swap: published record of %s: %w", node, err)
	}
	mintable, err := w.checkKeysets(node, pub.Keysets, now)
	if err != nil {
		return nil, fmt.Errorf("swap: %w", err)
	}
	return slices.MaxFunc(mintable, func(a, b *voucher.Keyset) int { return a.NotAfter().Compare(b.NotAfter()) }), nil
}

// swapSplit splits total into output amounts of ks that fit one swap
// request together with inputs of size bytes (voucher.MaxMessageSize):
// splitLadder's split, with as many 1-sat vouchers as fit, else the
// fewest vouchers (Keyset.Split), else ErrAmount.
func swapSplit(ks *voucher.Keyset, total uint64, size int) ([]uint64, error) {
	per := func(a uint64) int {
		k, _ := ks.Key(a)
		return 1 + 2 + k.Size()
	}
	room := voucher.MaxMessageSize - size
	maxOut := 0
	if p := per(ks.Amounts()[len(ks.Amounts())-1]); room > 0 {
		maxOut = min(room/p, voucher.MaxSwapOutputs)
	}
	fits := func(out []uint64) bool {
		n := size
		for _, a := range out {
			n += per(a)
		}
		return len(out) <= maxOut && n <= voucher.MaxMessageSize
	}
	if out, err := splitCapped(ks, total); err == nil && fits(out) {
		return moreSmallest(out, ks.Amounts()[0], maxOut), nil
	}
	if maxOut > 0 {
		if out, err := ks.Split(total, maxOut); err == nil && fits(out) {
			return out, nil
		}
	}
	return nil, fmt.Errorf("%w: %d sats do not fit one swap request", voucher.ErrAmount, total)
}

// runSwap sends swap id (rebuilt from the stored records: the same bytes
// every time) and records the answer. It returns how many inputs it
// settled. A stream failure, or a refusal the mint may lift (busy,
// unavailable), leaves the swap pending; any other refusal abandons it
// (the mint stored nothing under the id), leaving its inputs unsure.
func (w *Wallet) runSwap(ctx context.Context, id []byte) (int, error) {
	var rec swapRecord
	var ks *voucher.Keyset
	var ins, outs []voucherRecord
	err := w.db.View(func(tx *bolt.Tx) error {
		if ok, err := getJSON(tx.Bucket(bucketSwaps), id, &rec); err != nil || !ok {
			return fmt.Errorf("wallet: swap %x missing: %v", id[:4], err)
		}
		enc := tx.Bucket(bucketKeysets).Get(rec.Keyset[:])
		if enc == nil {
			return fmt.Errorf("wallet: keyset %s missing", rec.Keyset)
		}
		var err error
		if ks, err = voucher.ParseKeyset(enc); err != nil {
			return err
		}
		vb := tx.Bucket(bucketVouchers)
		for _, list := range []struct {
			keys [][32]byte
			out  *[]voucherRecord
		}{{rec.Inputs, &ins}, {rec.Outputs, &outs}} {
			for _, k := range list.keys {
				var v voucherRecord
				if ok, err := getJSON(vb, k[:], &v); err != nil || !ok {
					return fmt.Errorf("wallet: swap voucher %x missing: %v", k[:4], err)
				}
				*list.out = append(*list.out, v)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("swap: load: %w", err)
	}
	req := voucher.SwapRequest{Keyset: rec.Keyset}
	copy(req.ID[:], id)
	for _, v := range ins {
		req.Inputs = append(req.Inputs, v.voucher())
	}
	blinded := make([]*voucher.Blinded, len(outs))
	for i, v := range outs {
		key, ok := ks.Key(v.Amount)
		if !ok {
			return 0, fmt.Errorf("swap: %w", voucher.ErrDenomination)
		}
		if blinded[i], err = voucher.Blind(v.Seed, v.Amount, key); err != nil {
			return 0, fmt.Errorf("swap: %w", err)
		}
		req.Outputs = append(req.Outputs, voucher.BlindedMsg{Amount: v.Amount, Msg: blinded[i].Msg})
	}
	b, err := req.MarshalBinary()
	if err != nil {
		return 0, fmt.Errorf("swap: %w", err)
	}
	raw, err := w.roundTrip(ctx, rec.Node, b, voucher.MsgSwapResponse)
	if err != nil {
		if errors.Is(err, errRefused) && !errors.Is(err, voucher.ErrBusy) && !errors.Is(err, voucher.ErrUnavailable) {
			w.log.Info("swap refused; vouchers stay unsure", "node", rec.Node, "vouchers", len(ins), "err", err)
			if serr := w.finishSwap(id, &rec, SwapAbandoned, nil, nil); serr != nil {
				return 0, serr
			}
		}
		return 0, fmt.Errorf("swap: %w", err)
	}
	resp, err := voucher.ParseSwapResponse(raw)
	if err == nil && len(resp.Sigs) > 0 && len(resp.Sigs) != len(outs) {
		err = fmt.Errorf("%d signatures for %d outputs", len(resp.Sigs), len(outs))
	}
	if err == nil && len(resp.States) > 0 && len(resp.States) != len(ins) {
		err = fmt.Errorf("%d states for %d inputs", len(resp.States), len(ins))
	}
	if err != nil {
		w.penalize(rec.Node, err)
		return 0, fmt.Errorf("swap: %w: %w", errTransport, err)
	}
	if len(resp.States) > 0 {
		spent := 0
		for _, s := range resp.States {
			if s == voucher.StateSpent {
				spent++
			}
		}
		if err := w.finishSwap(id, &rec, SwapAbandoned, resp.States, nil); err != nil {
			return 0, err
		}
		return spent, nil
	}
	if w.afterSwapResponse != nil {
		if err := w.afterSwapResponse(); err != nil {
			return 0, err
		}
	}
	sigs := make([][]byte, len(blinded))
	for i, bl := range blinded {
		v, err := bl.Finalize(rec.Keyset, resp.Sigs[i])
		if err == nil {
			err = ks.VerifySignature(&v)
		}
		if err != nil {
			w.penalize(rec.Node, err)
			w.log.Warn("swap answered with bad signatures; inputs lost to the node", "node", rec.Node, "vouchers", len(ins))
			if serr := w.finishSwap(id, &rec, SwapFailed, nil, nil); serr != nil {
				return 0, serr
			}
			return 0, fmt.Errorf("swap: output %d: %w", i, err)
		}
		sigs[i] = v.Sig
	}
	if err := w.finishSwap(id, &rec, SwapDone, nil, sigs); err != nil {
		return 0, err
	}
	return len(ins), nil
}

// finishSwap records a swap's outcome in one transaction:
//   - SwapDone: inputs VoucherSwapped, outputs VoucherSigned with sigs;
//   - SwapAbandoned: inputs whose state is spent become VoucherSpent, the
//     others stay unsure; outputs VoucherVoid (never sent again);
//   - SwapFailed: inputs VoucherSpent, outputs VoucherVoid.
func (w *Wallet) finishSwap(id []byte, rec *swapRecord, to SwapState, states []uint8, sigs [][]byte) error {
	now := w.cfg.Now()
	err := w.db.Update(func(tx *bolt.Tx) error {
		vb := tx.Bucket(bucketVouchers)
		set := func(k [32]byte, from, to VoucherState, sig []byte) error {
			var v voucherRecord
			if ok, err := getJSON(vb, k[:], &v); err != nil || !ok || v.State != from {
				return fmt.Errorf("wallet: swap voucher %x in state %v, want %v: %v", k[:4], v.State, from, err)
			}
			v.State, v.Updated = to, now
			if sig != nil {
				v.Sig = sig
			}
			return putJSON(vb, k[:], &v)
		}
		for i, k := range rec.Inputs {
			var err error
			switch {
			case to == SwapDone:
				err = set(k, VoucherUnsure, VoucherSwapped, nil)
			case to == SwapFailed || states != nil && states[i] == voucher.StateSpent:
				err = set(k, VoucherUnsure, VoucherSpent, nil)
			}
			if err != nil {
				return err
			}
		}
		for i, k := range rec.Outputs {
			var err error
			if to == SwapDone {
				err = set(k, VoucherSwapOut, VoucherSigned, sigs[i])
			} else {
				err = set(k, VoucherSwapOut, VoucherVoid, nil)
			}
			if err != nil {
				return err
			}
		}
		rec.State, rec.Updated = to, now
		return putJSON(tx.Bucket(bucketSwaps), id, rec)
	})
	if err != nil {
		return fmt.Errorf("swap: store outcome: %w", err)
	}
	return nil
}
