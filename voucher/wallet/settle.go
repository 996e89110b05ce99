package wallet

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"

	"github.com/co-infuse/co-infuse/voucher"
)

// Settlement of unknown outcomes (VOUCHERS.md §3.9, after Cashu NUT-07).
// A voucher offered in a TOPUP that got no answer (a timeout, a closed
// circuit) may or may not have been redeemed. Unsure parks it as
// VoucherUnsure, durably, where Reserve never takes it; Settle asks the
// node's mint which of those are spent and moves each to VoucherSpent or
// back to VoucherSigned. Vouchers still reserved when the wallet starts
// were handed out by a run that crashed: Start parks them as unsure too.
// So no voucher is offered again until its node has said it is unspent,
// and none is lost.

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

// Settle asks each node holding unsure vouchers of this wallet which of
// them are spent (one check-state request per MaxCheckState vouchers,
// over Config.Dial like a purchase) and records the answers. It returns
// how many vouchers it settled and the first error; vouchers it could not
// ask about stay unsure for the next call.
func (w *Wallet) Settle(ctx context.Context) (int, error) {
	type item struct {
		key []byte
		ref voucher.SpendRef
	}
	byNode := map[peer.ID][]item{}
	err := w.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVouchers)
		return b.ForEach(func(k, _ []byte) error {
			var r voucherRecord
			if _, err := getJSON(b, k, &r); err != nil {
				return err
			}
			if r.State == VoucherUnsure {
				v := r.voucher()
				byNode[r.Node] = append(byNode[r.Node], item{key: append([]byte(nil), k...), ref: voucher.SpendRef{Keyset: r.Keyset, ID: v.SpendID()}})
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("settle: %w", err)
	}
	settled := 0
	var first error
	for node, items := range byNode {
		for len(items) > 0 && ctx.Err() == nil {
			batch := items[:min(len(items), voucher.MaxCheckState)]
			items = items[len(batch):]
			req := voucher.CheckStateRequest{Refs: make([]voucher.SpendRef, len(batch))}
			for i, it := range batch {
				req.Refs[i] = it.ref
			}
			states, err := w.checkState(ctx, node, &req)
			if err != nil {
				if first == nil {
					first = fmt.Errorf("settle with %s: %w", node, err)
				}
				break
			}
			keys := make([][]byte, len(batch))
			for i, it := range batch {
				keys[i] = it.key
			}
			n, err := w.applyStates(keys, states)
			settled += n
			if err != nil && first == nil {
				first = err
			}
		}
	}
	if settled > 0 {
		w.refreshHeld()
		w.log.Info("vouchers of unknown outcome settled", "vouchers", settled)
	}
	return settled, first
}

// checkState sends one check-state request to node and returns one state
// per voucher asked about.
func (w *Wallet) checkState(ctx context.Context, node peer.ID, req *voucher.CheckStateRequest) ([]uint8, error) {
	b, err := req.MarshalBinary()
	if err != nil {
		return nil, err
	}
	resp, err := w.roundTrip(ctx, node, b, voucher.MsgCheckStateResponse)
	if err != nil {
		return nil, err
	}
	r, err := voucher.ParseCheckStateResponse(resp)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errTransport, err)
	}
	if len(r.States) != len(req.Refs) {
		return nil, fmt.Errorf("%w: %d states for %d vouchers", errTransport, len(r.States), len(req.Refs))
	}
	return r.States, nil
}

// applyStates moves the unsure vouchers at keys to spent or signed, as
// states says, in one transaction. A voucher no longer unsure is left
// alone.
func (w *Wallet) applyStates(keys [][]byte, states []uint8) (int, error) {
	now := w.cfg.Now()
	n := 0
	err := w.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketVouchers)
		for i, k := range keys {
			var r voucherRecord
			ok, err := getJSON(b, k, &r)
			if err != nil {
				return err
			}
			if !ok || r.State != VoucherUnsure {
				continue
			}
			r.State, r.Updated = VoucherSigned, now
			if states[i] == voucher.StateSpent {
				r.State = VoucherSpent
			}
			if err := putJSON(b, k, &r); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("settle: store: %w", err)
	}
	return n, nil
}
