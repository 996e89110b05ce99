package payment

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// Circuit is the client's ledger for one circuit's paid hops. Count meters
// its stream bytes and starts top-ups; Close ends it. A nil *Circuit is a
// circuit with no paid hop: its methods do nothing and Wrap returns the
// conn unchanged.
type Circuit struct {
	cl   *Client
	c    TopUpper
	hops []hopState // Hop fields are fixed at Open; stats fields guarded by mu

	used    atomic.Int64 // stream bytes since the last top-up began
	topping atomic.Bool  // a top-up goroutine is running

	// ctx ends when Close is called; it cancels an in-flight top-up.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool // guarded by mu; set once by Close
	// wg counts this circuit's top-up goroutine (at most one). Add happens
	// under the client's mu and this mu while neither is closed.
	wg sync.WaitGroup
}

type hopState struct {
	Hop
	st HopStats // guarded by Circuit.mu
}

// HopStats is what a circuit paid one hop.
type HopStats struct {
	Hop
	// SatsPaid is the value of the vouchers in TOPUPs the hop
	// acknowledged (Reservation.Sats).
	SatsPaid uint64
	// BytesPaid is the bytes those TOPUPs paid for (the prepay included).
	BytesPaid int64
	// TopUps is the number of TOPUPs the hop acknowledged, the prepay
	// included.
	TopUps int
	// Failures is the number of payments that failed (no vouchers, a
	// failed purchase, or no acknowledgement).
	Failures int
	// Allowance is the allowance in bytes the hop reported in its last
	// TOPUP_ACK (0 while in debt).
	Allowance uint64
	// LastErr is the last payment failure, or nil.
	LastErr error
}

func newCircuit(cl *Client, c TopUpper, hops []Hop) *Circuit {
	pc := &Circuit{cl: cl, c: c, hops: make([]hopState, len(hops))}
	for i, h := range hops {
		pc.hops[i] = hopState{Hop: h, st: HopStats{Hop: h}}
	}
	// Not derived from cl.ctx, so an unclosed Circuit is not pinned in the
	// client's context tree; each top-up watches both.
	pc.ctx, pc.cancel = context.WithCancel(context.Background())
	return pc
}

// Count records n bytes of stream data on the circuit. Once
// TopUpEveryBytes have passed since the last top-up began it starts one
// in the background, unless one is running; it never blocks. The top-up
// pays every paid hop topUpBytes of what was used, in order, and stops at
// the first failure (the hops then close the circuit when its allowance and
// grace run out).
func (pc *Circuit) Count(n int) {
	if pc == nil || n <= 0 || len(pc.hops) == 0 {
		return
	}
	if pc.used.Add(int64(n)) < TopUpEveryBytes || !pc.topping.CompareAndSwap(false, true) {
		return
	}
	if !pc.start() {
		pc.topping.Store(false)
	}
}

// start runs a top-up on a goroutine owned by the client and the circuit;
// false if either is closed.
func (pc *Circuit) start() bool {
	cl := pc.cl
	cl.mu.Lock()
	defer cl.mu.Unlock()
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if cl.closed || pc.closed {
		return false
	}
	cl.wg.Add(1)
	pc.wg.Add(1)
	go func() {
		defer cl.wg.Done()
		defer pc.wg.Done()
		defer pc.topping.Store(false)
		pc.topUp()
	}()
	return true
}

// topUp pays every hop for the bytes used since the last top-up.
func (pc *Circuit) topUp() {
	used := pc.used.Swap(0)
	ctx, cancel := context.WithTimeout(pc.cl.ctx, pc.cl.cfg.TopUpTimeout)
	defer cancel()
	defer context.AfterFunc(pc.ctx, cancel)()
	for i := range pc.hops {
		if err := pc.pay(ctx, i, topUpBytes(used)); err != nil {
			pc.cl.log.Info("circuit top-up failed; its hops will close it when the prepaid bytes run out", "err", err)
			return
		}
	}
}

// pay sends hop i vouchers worth bytes of traffic in one TOPUP, buying
// them first if the wallet holds too few. Vouchers are committed (marked
// spent) only on TOPUP_ACK and released otherwise: if the hop did redeem
// them after all, offering them again is refused as a double spend, so no
// voucher is ever counted twice.
func (pc *Circuit) pay(ctx context.Context, i int, bytes int64) error {
	h := pc.hops[i].Hop
	sats := SatsFor(bytes, h.PriceSatPerMB)
	r, err := pc.cl.cfg.Reserve(h.Peer, sats)
	if buy := pc.cl.cfg.Buy; buy != nil && errors.Is(err, wallet.ErrInsufficient) {
		if berr := buy(ctx, h.Peer, max(sats, pc.cl.cfg.TargetBalanceSat)); berr != nil {
			return pc.failed(i, fmt.Errorf("buy vouchers from hop %d: %w", h.Index+1, berr))
		}
		r, err = pc.cl.cfg.Reserve(h.Peer, sats)
	}
	if err != nil {
		return pc.failed(i, fmt.Errorf("vouchers for hop %d: %w", h.Index+1, err))
	}
	ack, err := pc.c.TopUp(ctx, h.Index, r.Payload)
	if err != nil {
		if r.Release != nil {
			if rerr := r.Release(); rerr != nil {
				pc.cl.log.Warn("release vouchers after failed top-up", "err", rerr)
			}
		}
		return pc.failed(i, fmt.Errorf("pay hop %d: %w", h.Index+1, err))
	}
	if r.Commit != nil {
		if cerr := r.Commit(); cerr != nil {
			pc.cl.log.Warn("mark vouchers spent", "err", cerr)
		}
	}
	if r.Sats > sats {
		// The hop credits what it redeemed: the change buys bytes too.
		sats, bytes = r.Sats, CreditBytes(r.Sats, h.PriceSatPerMB)
	}
	pc.mu.Lock()
	st := &pc.hops[i].st
	st.SatsPaid += sats
	st.BytesPaid += bytes
	st.TopUps++
	if len(ack) == 8 {
		st.Allowance = binary.BigEndian.Uint64(ack)
	}
	pc.mu.Unlock()
	return nil
}

// failed records err against hop i and returns it.
func (pc *Circuit) failed(i int, err error) error {
	pc.mu.Lock()
	pc.hops[i].st.Failures++
	pc.hops[i].st.LastErr = err
	pc.mu.Unlock()
	return err
}

// Stats returns what the circuit paid each paid hop, in the order given to
// Open.
func (pc *Circuit) Stats() []HopStats {
	if pc == nil {
		return nil
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	out := make([]HopStats, len(pc.hops))
	for i := range pc.hops {
		out[i] = pc.hops[i].st
	}
	return out
}

// Close stops the circuit's top-up, if one is running (its TOPUP fails and
// its vouchers are released), and waits for it to end. Later Counts do
// nothing. Safe to call more than once.
func (pc *Circuit) Close() {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	pc.closed = true
	pc.mu.Unlock()
	pc.cancel()
	pc.wg.Wait()
}
