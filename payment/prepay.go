package payment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// Build is one circuit build's handshake payments (PROTOCOL.md §4.1): for
// each paid hop it reserves PrepayBytes at the hop's price from the wallet
// just before the hop's handshake is sent, and settles the reservation by
// the hop's answer: credited or refused for good, the vouchers are spent;
// refused for a passing reason, they go back to the wallet; with no answer
// (a timeout, a link that closed, a hop that failed after it read the
// offer) they are unsure, and the wallet swaps them at the hop's mint for
// new vouchers (VOUCHERS.md §3.10) before it offers any again. So a
// voucher offered in a handshake is never lost and never offered twice.
// After a successful build, OpenBuilt turns it into the circuit's ledger.
type Build struct {
	cl          *Client
	hops        []Hop
	prepayBytes int64 // bytes each hop's handshake pays for: PrepayBytes, or PurchasePrepayBytes

	mu   sync.Mutex
	paid []prepaid // guarded by mu; one per hop, in the order of hops
}

// prepaid is what one hop's handshake settled.
type prepaid struct {
	done    bool   // Done ran with an answer from the hop
	sats    uint64 // sats the hop credited
	ack     Ack    // the hop's answer
	offered uint64 // sats offered
	err     error  // why the hop's payment failed, or nil
}

// NewBuild starts the handshake payments of one circuit build through the
// paid hops in hops (Hop.Index is the hop's position in the path). With
// limited, it takes one of the client's paid circuits per minute
// (MaxPaidCircuitsPerMinute) and fails with ErrRateLimited, paying nothing,
// when there is none; purchase circuits (node/buy.go) pass false. Set
// each hop's circuit.HopInfo.Prepay to Prepay(hop.Index).
func (cl *Client) NewBuild(hops []Hop, limited bool) (*Build, error) {
	for _, h := range hops {
		if h.Index < 0 || h.Index >= cell.MaxHops {
			return nil, fmt.Errorf("%w: NewBuild: hop index %d", ErrConfig, h.Index)
		}
	}
	cl.mu.Lock()
	closed := cl.closed
	rl := limited && len(hops) > 0 && !cl.takeTokenLocked()
	cl.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if rl {
		cl.log.Warn("new paid circuit refused: over the cap of paid circuits per minute", "cap", cl.cfg.MaxPaidCircuitsPerMinute)
		return nil, ErrRateLimited
	}
	return &Build{cl: cl, hops: hops, prepayBytes: PrepayBytes, paid: make([]prepaid, len(hops))}, nil
}

// PurchasePrepayBytes is what a purchase circuit (node/buy.go: one mint
// exchange of at most 32,986 bytes each way, VOUCHERS.md §3.1) pays each
// of its paid hops in the handshake: 256 KiB, 64 cells, a sat or so,
// instead of PrepayBytes, as such a circuit is never topped up.
const PurchasePrepayBytes = 256 << 10

// NewPurchaseBuild is NewBuild for a purchase circuit: it is not counted
// against MaxPaidCircuitsPerMinute and each paid hop is prepaid
// PurchasePrepayBytes.
func (cl *Client) NewPurchaseBuild(hops []Hop) (*Build, error) {
	b, err := cl.NewBuild(hops, false)
	if err != nil {
		return nil, err
	}
	b.prepayBytes = PurchasePrepayBytes
	return b, nil
}

// Prepay returns the circuit.Prepay for the hop at position index, or nil
// if that hop is not paid.
func (b *Build) Prepay(index int) *circuit.Prepay {
	for i, h := range b.hops {
		if h.Index == index {
			return b.prepay(i)
		}
	}
	return nil
}

// prepay is hop i's (of b.hops) Offer and Done.
func (b *Build) prepay(i int) *circuit.Prepay {
	h := b.hops[i]
	var r Reservation
	var offered uint64
	return &circuit.Prepay{
		Offer: func(ctx context.Context) (cell.Offer, error) {
			sats := SatsFor(b.prepayBytes, h.PriceSatPerMB)
			var err error
			r, err = b.cl.cfg.Reserve(h.Peer, sats)
			if buy := b.cl.cfg.Buy; buy != nil && errors.Is(err, wallet.ErrInsufficient) {
				if berr := buy(ctx, h.Peer, max(sats, b.cl.cfg.TargetBalanceSat)); berr != nil {
					return cell.Offer{}, b.failed(i, fmt.Errorf("buy vouchers from hop %d: %w", h.Index+1, berr))
				}
				r, err = b.cl.cfg.Reserve(h.Peer, sats)
			}
			if err != nil {
				return cell.Offer{}, b.failed(i, fmt.Errorf("vouchers for hop %d: %w", h.Index+1, err))
			}
			offered = max(sats, r.Sats)
			return cell.Offer{Kind: cell.OfferVouchers, Batch: r.Payload}, nil
		},
		Done: func(a cell.Answer, answered bool) error {
			return b.done(i, r, offered, a, answered)
		},
	}
}

// done settles hop i's reservation r by its answer and records it.
func (b *Build) done(i int, r Reservation, offered uint64, a cell.Answer, answered bool) error {
	h := b.hops[i]
	log := b.cl.log
	switch {
	case !answered:
		unsure(log, r)
		return b.failed(i, fmt.Errorf("pay hop %d in its handshake: no answer; the vouchers wait for its mint to say which are spent", h.Index+1))
	case !a.Paid:
		// A free hop: it took nothing.
		settle(log, r, false)
		return nil
	case a.Status == cell.AnswerMintOnly:
		// Not what was asked: it may have redeemed them all the same.
		unsure(log, r)
		return b.failed(i, fmt.Errorf("pay hop %d in its handshake: %w: a mint-only grant to a paid offer", h.Index+1, ErrMalformedAck))
	}
	var ack Ack
	if err := ack.UnmarshalBinary(a.Ack); err != nil {
		settle(log, r, a.Status == cell.AnswerPaid)
		return b.failed(i, fmt.Errorf("pay hop %d in its handshake: %w", h.Index+1, err))
	}
	if a.Status == cell.AnswerRefused {
		settle(log, r, ack.Reason.Permanent())
		log.Warn("hop refused the payment in its handshake; circuit not built",
			"hop", h.Index+1, "peer", h.Peer, "reason", ack.Reason, "offered_sat", offered)
		return b.failed(i, fmt.Errorf("pay hop %d in its handshake: refused (%v): %w", h.Index+1, ack.Reason, circuit.ErrPayment))
	}
	settle(log, r, true)
	if ack.CreditedSat == 0 || (ack.Reason == ReasonNone && ack.CreditedSat != offered) {
		return b.failed(i, fmt.Errorf("pay hop %d in its handshake: %w: credited %d of %d sats (reason %v)", h.Index+1, ErrMalformedAck, ack.CreditedSat, offered, ack.Reason))
	}
	if ack.Reason != ReasonNone {
		log.Info("hop credited part of a handshake payment", "hop", h.Index+1, "peer", h.Peer,
			"credited_sat", min(ack.CreditedSat, offered), "offered_sat", offered, "reason", ack.Reason)
	}
	credited := min(ack.CreditedSat, offered)
	b.mu.Lock()
	b.paid[i] = prepaid{done: true, sats: credited, ack: ack, offered: offered}
	b.mu.Unlock()
	if f := b.cl.cfg.Credited; f != nil {
		f(h.Peer, credited)
	}
	return nil
}

// failed records err against hop i and returns it.
func (b *Build) failed(i int, err error) error {
	b.mu.Lock()
	b.paid[i].err = err
	b.mu.Unlock()
	return err
}

// OpenBuilt returns the ledger of a circuit c built with b: each paid hop
// starts with what its handshake credited, and the client tops it up from
// there (Circuit.Check) until Close. It fails, paying nothing more, if a
// paid hop was not credited in its handshake (the build should have
// failed). The caller must Close the returned Circuit when c ends.
func (cl *Client) OpenBuilt(c TopUpper, b *Build) (*Circuit, error) {
	if c == nil || b == nil {
		return nil, fmt.Errorf("%w: OpenBuilt: nil circuit or build", ErrConfig)
	}
	pc := newCircuit(cl, c, b.hops)
	if g, ok := c.(growthGater); ok && len(pc.hops) > 0 {
		g.SetGrowthGate(pc.allowsWindow)
	}
	b.mu.Lock()
	for i := range pc.hops {
		p := b.paid[i]
		if !p.done {
			b.mu.Unlock()
			pc.Close()
			return nil, fmt.Errorf("open paid circuit: hop %d was not paid in its handshake", pc.hops[i].Index+1)
		}
		st := &pc.hops[i].st
		st.SatsPaid, st.HandshakeSat = p.sats, p.sats
		pc.setCreditLocked(i, min(CreditBytes(p.sats, pc.hops[i].PriceSatPerMB), MaxAllowanceBytes))
		st.TopUps = 1
		st.Allowance, st.Charged = p.ack.Allowance, p.ack.Charged
		if p.ack.Reason != ReasonNone {
			st.LastReason = p.ack.Reason.String()
		}
	}
	b.mu.Unlock()
	if len(pc.hops) > 0 && !cl.track(pc) {
		pc.Close()
		return nil, ErrClosed
	}
	return pc, nil
}

// MintOnly is the circuit.Prepay of the last hop of a purchase circuit
// (PROTOCOL.md §4.5): it offers no payment and asks for a mint-only
// circuit, which a paid hop grants for its mint service alone. A free hop
// answers with its cookie alone, which is accepted too.
func MintOnly() *circuit.Prepay {
	return &circuit.Prepay{
		Offer: func(context.Context) (cell.Offer, error) { return cell.Offer{Kind: cell.OfferMintOnly}, nil },
		// Nothing was offered, so there is nothing to settle; a refusal
		// fails the build in circuit.
		Done: func(cell.Answer, bool) error { return nil },
	}
}

// settle commits r's vouchers or releases them, logging a wallet failure.
func settle(log *slog.Logger, r Reservation, commit bool) {
	if commit {
		if r.Commit != nil {
			if err := r.Commit(); err != nil {
				log.Warn("mark vouchers spent", "err", err)
			}
		}
		return
	}
	if r.Release != nil {
		if err := r.Release(); err != nil {
			log.Warn("release vouchers after a failed payment", "err", err)
		}
	}
}

// unsure hands r back as offered with no answer (Reservation.Unsure).
func unsure(log *slog.Logger, r Reservation) {
	if r.Unsure == nil {
		settle(log, r, false)
		return
	}
	if err := r.Unsure(); err != nil {
		log.Warn("park vouchers of a payment with no answer", "err", err)
	}
}
