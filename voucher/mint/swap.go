package mint

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	bolt "go.etcd.io/bbolt"
)

// bucketSwaps maps a swap's request id to its stored answer (swapRecord),
// so a retried swap gets the same signatures and never a second set.
var bucketSwaps = []byte("swaps")

const swapRecordVersion = 1

// swapRecord is an answered swap as stored in bucketSwaps.
type swapRecord struct {
	created    time.Time
	pruneAfter time.Time // the latest RedeemUntil of the inputs' keysets
	reqHash    [32]byte  // SHA-256 of the swap request that was answered
	resp       []byte    // the SwapResponse sent (status 0)
}

// encode: ver(1) | created(8) | prune_after(8) | req_hash(32) | resp.
func (r *swapRecord) encode() []byte {
	b := []byte{swapRecordVersion}
	b = binary.BigEndian.AppendUint64(b, uint64(r.created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.pruneAfter.Unix()))
	b = append(b, r.reqHash[:]...)
	return append(b, r.resp...)
}

var errSwapRecord = errors.New("mint: corrupt swap record")

func decodeSwapRecord(b []byte) (*swapRecord, error) {
	if len(b) < 1+8+8+32+1 || b[0] != swapRecordVersion {
		return nil, errSwapRecord
	}
	r := &swapRecord{
		created:    unixTime(int64(binary.BigEndian.Uint64(b[1:]))),
		pruneAfter: unixTime(int64(binary.BigEndian.Uint64(b[9:]))),
		resp:       append([]byte(nil), b[49:]...),
	}
	copy(r.reqHash[:], b[17:49])
	return r, nil
}

// answer returns the stored response if reqHash is the stored request's,
// else ErrSwapConflict.
func (r *swapRecord) answer(reqHash [32]byte) ([]byte, error) {
	if subtle.ConstantTimeCompare(r.reqHash[:], reqHash[:]) != 1 {
		return nil, voucher.ErrSwapConflict
	}
	return r.resp, nil
}

// storedSwap returns the stored answer of request id, or nil, nil if
// there is none.
func (m *Mint) storedSwap(id [voucher.SwapIDSize]byte, reqHash [32]byte) ([]byte, error) {
	var resp []byte
	err := m.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSwaps).Get(id[:])
		if v == nil {
			return nil
		}
		rec, err := decodeSwapRecord(v)
		if err != nil {
			return err
		}
		resp, err = rec.answer(reqHash)
		return err
	})
	if errors.Is(err, errSwapRecord) {
		m.log.Error("corrupt swap record", "err", err)
		return nil, voucher.ErrUnavailable
	}
	if err != nil && !errors.Is(err, voucher.ErrSwapConflict) {
		return nil, fmt.Errorf("%w: load swap: %v", voucher.ErrUnavailable, err)
	}
	return resp, err
}

// swapSlotID names a swap's slot in the open-slot table: the first bytes
// of its request id.
func swapSlotID(id [voucher.SwapIDSize]byte) (s [voucher.QuoteIDSize]byte) {
	copy(s[:], id[:])
	return s
}

// swap serves a swap request (VOUCHERS.md §3.10). A request id that was
// answered before gets the stored answer if the request is byte-identical
// (SHA-256 compared), else ErrSwapConflict. Otherwise, cheapest checks
// first: the output keyset (known, minting now, a key for every output),
// the balance, the inputs' keysets and windows (no public-key work); then
// a slot in the open-slot table, shared with quotes and their per-buyer
// and fair-share caps (a swap costs RSA signatures as a paid mint request
// does), held for SwapHold; then the inputs' signatures; then the spent
// set. If any input is spent the answer names which (status 1) and
// nothing is spent or signed. Else the outputs are signed (at most
// MaxSwapsSigning swaps at once) and, in one fsynced transaction, the
// inputs are marked spent and the answer stored under the request id;
// only then is it returned.
func (m *Mint) swap(ctx context.Context, from quoteOwner, req *voucher.SwapRequest, reqHash [32]byte) ([]byte, error) {
	if resp, err := m.storedSwap(req.ID, reqHash); resp != nil || err != nil {
		if err == nil {
			m.swapsReplayed.Add(1)
		}
		return resp, err
	}
	now := m.cfg.Now()
	out := m.keyset(req.Keyset)
	if out == nil {
		return nil, fmt.Errorf("%w: swap output keyset", voucher.ErrUnknownKeyset)
	}
	if !out.Public().MintableAt(now) {
		return nil, fmt.Errorf("%w: swap output keyset not minting", voucher.ErrExpired)
	}
	for _, bm := range req.Outputs {
		if _, ok := out.Public().Key(bm.Amount); !ok {
			return nil, fmt.Errorf("%w: swap output of %d sats", voucher.ErrDenomination, bm.Amount)
		}
	}
	if in, o := req.InputTotal(), req.OutputTotal(); in != o {
		return nil, fmt.Errorf("%w: swap of %d sats for %d", voucher.ErrBadRequest, in, o)
	}
	keysets := make([]*voucher.Keyset, len(req.Inputs))
	entries := make([]voucher.SpentEntry, len(req.Inputs))
	var pruneAfter time.Time
	for i := range req.Inputs {
		v := &req.Inputs[i]
		sk := m.keyset(v.Keyset)
		if sk == nil {
			return nil, fmt.Errorf("%w: swap input", voucher.ErrUnknownKeyset)
		}
		if err := sk.Public().CheckCheap(v, now); err != nil {
			return nil, fmt.Errorf("swap input: %w", err)
		}
		keysets[i] = sk.Public()
		entries[i] = voucher.EntryFor(sk.Public(), v)
		if ru := sk.Public().RedeemUntil(); ru.After(pruneAfter) {
			pruneAfter = ru
		}
	}
	if int(m.swapsStored.Load()) >= m.cfg.MaxSwapRecords {
		return nil, fmt.Errorf("%w: %d swaps stored", voucher.ErrBusy, m.swapsStored.Load())
	}
	if !m.reserveOpen(swapSlotID(req.ID), from, now, now.Add(m.cfg.SwapHold)) {
		return nil, fmt.Errorf("%w: swap", voucher.ErrBusy)
	}
	for i := range req.Inputs {
		if err := keysets[i].VerifySignature(&req.Inputs[i]); err != nil {
			return nil, fmt.Errorf("swap input: %w", err)
		}
	}
	states := make([]uint8, len(entries))
	anySpent := false
	for i, e := range entries {
		spent, err := m.spent.IsSpent(e)
		if err != nil {
			return nil, fmt.Errorf("%w: spent set: %v", voucher.ErrUnavailable, err)
		}
		if spent {
			states[i], anySpent = voucher.StateSpent, true
		}
	}
	if anySpent {
		r := voucher.SwapResponse{States: states}
		return r.MarshalBinary()
	}

	select {
	case m.swapSigning <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: swap: %v", voucher.ErrBusy, ctx.Err())
	}
	sigs := make([][]byte, len(req.Outputs))
	var err error
	for i, bm := range req.Outputs {
		if sigs[i], err = out.BlindSign(bm.Amount, bm.Msg); err != nil {
			break
		}
	}
	<-m.swapSigning
	if err != nil {
		return nil, err
	}
	if m.afterSwapSign != nil {
		if err := m.afterSwapSign(); err != nil {
			return nil, fmt.Errorf("%w: %v", voucher.ErrUnavailable, err)
		}
	}
	signed := voucher.SwapResponse{Sigs: sigs}
	signedResp, err := signed.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: swap response: %v", voucher.ErrUnavailable, err)
	}
	var resp []byte
	stored := false
	err = m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSwaps)
		if v := b.Get(req.ID[:]); v != nil { // a concurrent retry won
			rec, err := decodeSwapRecord(v)
			if err != nil {
				return err
			}
			resp, err = rec.answer(reqHash)
			return err
		}
		spent, claimed, err := m.spent.ClaimTx(tx, entries)
		if err != nil {
			return err
		}
		if !claimed { // a redemption won since the read above
			for i, s := range spent {
				if s {
					states[i] = voucher.StateSpent
				}
			}
			r := voucher.SwapResponse{States: states}
			resp, err = r.MarshalBinary()
			return err
		}
		rec := swapRecord{created: now, pruneAfter: pruneAfter, reqHash: reqHash, resp: signedResp}
		if err := b.Put(req.ID[:], rec.encode()); err != nil {
			return err
		}
		resp, stored = signedResp, true
		return nil
	})
	if errors.Is(err, voucher.ErrSwapConflict) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: store swap: %v", voucher.ErrUnavailable, err)
	}
	if stored {
		m.swapsStored.Add(1)
		m.swapsSigned.Add(1)
	}
	return resp, nil
}

// SwapCounts reports how many swaps this Mint signed and stored, and how
// many retries it answered from a stored answer, since New.
func (m *Mint) SwapCounts() (signed, replayed int64) {
	return m.swapsSigned.Load(), m.swapsReplayed.Load()
}

// countSwaps returns the number of stored swap answers (at New).
func countSwaps(tx *bolt.Tx) int64 {
	return int64(tx.Bucket(bucketSwaps).Stats().KeyN)
}

// pruneSwaps drops stored swap answers whose inputs' keysets have all
// stopped redeeming (prune_after). A retry after that finds no answer and
// is refused as expired or unknown keyset: a wallet that did not retry for
// a keyset's whole life and grace loses that swap's outputs (VOUCHERS.md
// §3.10).
func (m *Mint) pruneSwaps(now time.Time) (int, error) {
	n := 0
	err := m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSwaps)
		var dead [][]byte
		err := b.ForEach(func(k, v []byte) error {
			if len(v) >= 17 && !unixTime(int64(binary.BigEndian.Uint64(v[9:]))).After(now) {
				dead = append(dead, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	if err != nil {
		return 0, err
	}
	m.swapsStored.Add(-int64(n))
	return n, nil
}
