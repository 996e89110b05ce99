package wallet

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// run is the wallet's one background goroutine: it resumes unfinished
// purchases, then (with AutoBuy) tops up the nodes in use and the
// candidates (Config.Candidates) at random times, refillDelay apart. A
// short balance found by Reserve does not hurry it: a purchase right after
// a failed payment would tell the node when its vouchers were wanted.
func (w *Wallet) run() {
	defer w.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Stop closes quit; turn that into ctx cancellation for in-flight
	// purchases. The callback is unregistered when run returns.
	go func() { // owned by run: ends when quit closes or run's deferred cancel fires
		select {
		case <-w.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := w.Resume(ctx); err != nil {
		w.log.Warn("resuming purchases", "err", err)
	}
	w.refreshHeld()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		if w.cfg.AutoBuy {
			w.topUp(ctx)
		}
		if err := w.Resume(ctx); err != nil {
			w.log.Debug("resuming purchases", "err", err)
		}
		if _, err := w.Settle(ctx); err != nil {
			w.log.Info("settling vouchers of unknown outcome; retrying next round", "err", err)
		}
		if _, err := w.Prune(); err != nil {
			w.log.Warn("pruning wallet", "err", err)
		}
		w.refreshHeld()
		t.Reset(refillDelay(w.rng, w.cfg.AutoBuyInterval))
	}
}

// refillDelay draws the gap before the next round of automatic purchase:
// exponential with mean (a memoryless process: how long since the last
// purchase says nothing about the next), cut to mean/10 .. 4×mean so the
// wallet neither spins nor stalls. The cut moves the mean to about 0.98×mean.
func refillDelay(rng *rand.Rand, mean time.Duration) time.Duration {
	d := time.Duration(rng.ExpFloat64() * float64(mean))
	return min(max(d, mean/10), 4*mean)
}

// MinOneSatVouchers and OneSatRefillSat: a node held from whose 1-sat
// vouchers (available or being bought) fall below MinOneSatVouchers is
// bought OneSatRefillSat from, which splitLadder splits into 1-sat
// vouchers (up to 64 sats, all of them), even though its balance is above
// RefillBelowSat. Each new circuit prepays each paid hop a few sats in
// its handshake (PROTOCOL.md §5.3), which small vouchers pay exactly, and a
// guard sees every circuit.
const (
	MinOneSatVouchers        = 16
	OneSatRefillSat   uint64 = 64
)

// topUp buys for every node in use or named by Config.Candidates whose
// available balance is below RefillBelowSat, up to TargetBalanceSat (both
// raised for a node in heavy use: refillLevels), or
// that is held from but short of 1-sat vouchers (MinOneSatVouchers), within
// the budget, in random order.
func (w *Wallet) topUp(ctx context.Context) {
	now := w.cfg.Now()
	w.mu.Lock()
	var nodes []peer.ID
	for n, until := range w.inUse {
		if now.Before(until) {
			nodes = append(nodes, n)
		} else {
			delete(w.inUse, n)
		}
	}
	w.mu.Unlock()
	if w.cfg.Candidates != nil {
		for _, n := range w.cfg.Candidates() {
			if !slices.Contains(nodes, n) && len(nodes) < maxTrackedNodes {
				nodes = append(nodes, n)
			}
		}
	}
	w.rng.Shuffle(len(nodes), func(i, j int) { nodes[i], nodes[j] = nodes[j], nodes[i] })
	if len(nodes) == 0 {
		return
	}
	bals, err := w.Balances()
	if err != nil {
		w.log.Warn("auto-buy: balances", "err", err)
		return
	}
	for _, n := range nodes {
		if ctx.Err() != nil {
			return
		}
		b := bals[n]
		have := b.Available + b.Pending
		target, below := w.refillLevels(n, now)
		low := b.Available < below && have < target
		// Short of 1-sat vouchers, a node held from is bought from too
		// (OneSatRefillSat, mostly 1-sat vouchers: splitLadder), at most
		// OneSatRefillSat beyond the target.
		// A node whose keyset has no 1-sat key is never short: buying
		// would not bring one, only another payment.
		w.mu.Lock()
		noOne := w.noOneSat[n]
		w.mu.Unlock()
		short := !low && !noOne && b.Vouchers > 0 && b.OneSat < MinOneSatVouchers && have < target+OneSatRefillSat
		if !(low || short) || w.inBackoff(n) {
			continue
		}
		want := OneSatRefillSat
		if low {
			want = target - have
		}
		used, limit, err := w.BudgetUsed()
		if err != nil || used >= limit {
			return
		}
		rem := limit - used
		if low && target > w.cfg.TargetBalanceSat {
			// What use adds to the target takes at most a quarter of
			// the budget left, so one busy node cannot leave the
			// others (the guards) nothing for the rest of the day.
			extra := min(target-w.cfg.TargetBalanceSat, rem/4)
			want = min(want, (w.cfg.TargetBalanceSat+extra)-min(have, w.cfg.TargetBalanceSat+extra))
			if want == 0 {
				continue
			}
		}
		want = min(want, rem)
		for want > 0 && want+uint64(w.feeLimit(want)) > rem {
			want--
		}
		if want == 0 {
			return
		}
		if _, err := w.Buy(ctx, n, want); err != nil {
			// Misbehaviour was penalised inside Buy; a node that refuses
			// or prices itself out is not asked again every interval.
			if errors.Is(err, errRefused) || errors.Is(err, ErrPrice) {
				w.penalize(n, err)
			}
			w.log.Info("auto-buy failed", "node", n, "sats", want, "err", err)
		}
	}
}
