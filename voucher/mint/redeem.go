package mint

import (
	"context"
	"fmt"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
)

func unixTime(s int64) time.Time { return time.Unix(s, 0).UTC() }

// Redeem verifies vouchers against the node's keysets and marks the good
// ones spent, durably, before it returns. It returns the sats to credit —
// the sum of the vouchers that verified and were not spent before — and,
// if any voucher was refused, an error wrapping the first refusal's
// sentinel (voucher.ErrBadSignature, ErrUnknownKeyset, ErrExpired,
// ErrSpent, …). The caller credits credited even when err is non-nil: the
// good vouchers are spent either way. A zero credited with an error from the
// spent set itself (not a refusal) means nothing was spent.
func (m *Mint) Redeem(ctx context.Context, vs []voucher.Voucher) (credited uint64, err error) {
	now := m.cfg.Now()
	var firstErr error
	note := func(err error) {
		if firstErr == nil {
			firstErr = err
		}
	}
	// VOUCHERS.md §2.5: the cheap checks (keyset, window, denomination) of
	// the whole batch first, then the signatures of what passed, then the
	// spent set, so a batch of garbage costs no RSA work and a forged one
	// no disk access.
	type candidate struct {
		v  *voucher.Voucher
		sk *voucher.SigningKeyset
	}
	cands := make([]candidate, 0, len(vs))
	for i := range vs {
		v := &vs[i]
		sk := m.keyset(v.Keyset)
		if sk == nil {
			note(voucher.ErrUnknownKeyset)
			continue
		}
		if err := sk.Public().CheckCheap(v, now); err != nil {
			note(err)
			continue
		}
		cands = append(cands, candidate{v, sk})
	}
	entries := make([]voucher.SpentEntry, 0, len(cands))
	amounts := make([]uint64, 0, len(cands))
	for _, c := range cands {
		if err := c.sk.Public().VerifySignature(c.v); err != nil {
			note(err)
			continue
		}
		entries = append(entries, voucher.EntryFor(c.sk.Public(), c.v))
		amounts = append(amounts, c.v.Amount)
	}
	if len(entries) == 0 {
		if firstErr == nil {
			firstErr = voucher.ErrMalformed // an empty batch
		}
		return 0, fmt.Errorf("redeem: %w", firstErr)
	}
	fresh, err := m.spent.Spend(ctx, entries)
	if err != nil {
		return 0, fmt.Errorf("redeem: %w", err)
	}
	for i, f := range fresh {
		if f {
			credited += amounts[i]
		} else {
			note(voucher.ErrSpent)
		}
	}
	if firstErr != nil {
		return credited, fmt.Errorf("redeem: %w", firstErr)
	}
	return credited, nil
}

// RedeemPayload decodes a redemption batch (a TOPUP payload, VOUCHERS.md
// §2.1) and redeems it as Redeem does.
func (m *Mint) RedeemPayload(ctx context.Context, payload []byte) (uint64, error) {
	vs, err := voucher.DecodeBatch(payload)
	if err != nil {
		return 0, fmt.Errorf("redeem: %w", err)
	}
	return m.Redeem(ctx, vs)
}

// checkState answers a check-state request (VOUCHERS.md §3.9): for each
// voucher, whether the spent set holds it. A keyset the mint does not
// know has spent nothing here. It reads only the spent set, so a wallet
// that lost a TOPUP_ACK learns what a second offer would have told it,
// without offering anything.
func (m *Mint) checkState(r *voucher.CheckStateRequest) ([]byte, error) {
	resp := voucher.CheckStateResponse{States: make([]uint8, len(r.Refs))}
	for i, ref := range r.Refs {
		spent, err := m.spent.IsSpent(voucher.SpentEntry{Keyset: ref.Keyset, ID: ref.ID})
		if err != nil {
			return nil, fmt.Errorf("%w: spent set: %v", voucher.ErrUnavailable, err)
		}
		if spent {
			resp.States[i] = voucher.StateSpent
		}
	}
	return resp.MarshalBinary()
}
