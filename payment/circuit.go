package payment

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// Circuit is the client's ledger for one circuit's paid hops: it keeps
// each hop's prepaid allowance ahead of the cells the hop carries
// (schedule.go), checks every TOPUP_ACK against its own counts, and stops
// paying a hop that over-charges. Check (and the conn from Wrap) looks at
// the counts; Close ends it. A nil *Circuit is a circuit with no paid
// hop: its methods do nothing and Wrap returns the conn unchanged.
type Circuit struct {
	cl   *Client
	c    TopUpper
	hops []hopState // Hop fields are fixed at Open; the rest guarded by mu

	// ctx ends when Close is called; it cancels in-flight top-ups.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool // guarded by mu; set once by Close
	stopped bool // guarded by mu; a hop misbehaved: nothing more is paid
	// landed is guarded by mu: closed (and replaced) whenever a top-up
	// ends or the circuit closes or stops, to wake paced readers.
	landed chan struct{}
	// wg counts this circuit's top-up goroutines (at most one per hop).
	// Add happens under the client's mu and this mu while neither is
	// closed.
	wg sync.WaitGroup

	// window is the widest stream window the growth gate (allowsWindow)
	// has granted, in bytes: SessionGraceBytes (the base window) until it
	// grants more; it never shrinks. Paced reads (pace) and the schedule
	// count on it. Atomic: the gate runs under a stream's lock.
	window atomic.Int64
	// wantWindow is the window the schedule keeps paid ahead for
	// (topUp sets it from the bytes carried during a top-up's round
	// trip: growWindow); the gate grants no more than it. Atomic.
	wantWindow atomic.Int64
}

// hopState is one paid hop; every field but Hop is guarded by Circuit.mu.
type hopState struct {
	Hop
	st       HopStats
	topping  bool          // a top-up goroutine for this hop is running
	inflight uint64        // bytes it carried during its last successful top-up
	fails    int           // consecutive failed top-ups
	retryAt  time.Time     // no top-up before this, after a failure
	target   int64         // the allowance kept ahead now: PrepayBytes doubling per top-up to TargetAheadBytes
	atOpen   uint64        // bytes it had carried when the circuit opened (the build): firstTopUpDue counts from there
	minRTT   time.Duration // the shortest successful top-up's round trip (pathRTTLocked)
	// limit is windowLimit of st.BytesPaid: carried bytes plus the stream
	// window may not pass it (pace, allowsWindow). Written under
	// Circuit.mu (setCreditLocked), read without it by the growth gate.
	limit atomic.Int64
}

// HopStats is what a circuit paid one hop, and what the hop answered.
type HopStats struct {
	Hop
	// SatsPaid is the value of the vouchers the hop credited, as its
	// TOPUP_ACKs said (at most what was offered).
	SatsPaid uint64
	// HandshakeSat is the part of SatsPaid credited in the hop's
	// handshake (OpenBuilt), already reported to ClientConfig.Credited.
	HandshakeSat uint64
	// BytesPaid is the bytes those sats buy at the hop's advertised price
	// (CreditBytes), the prepay included: the hop's credit as the client
	// counts it.
	BytesPaid int64
	// TopUps is the number of TOPUPs the hop credited, the prepay
	// included.
	TopUps int
	// Failures is the number of payments that failed (no vouchers, a
	// failed purchase, a refusal or no acknowledgement).
	Failures int
	// Allowance is the allowance in bytes the hop reported in its last
	// TOPUP_ACK; negative while in debt.
	Allowance int64
	// Charged is the bytes the hop reported, in its last TOPUP_ACK, to
	// have charged the circuit so far.
	Charged uint64
	// OverCharged: the hop reported more bytes charged than the client
	// counted (beyond OverChargeToleranceBytes), or credited less than its
	// advertised price buys. Stopped is then true as well.
	OverCharged bool
	// Stopped: the client stopped paying the hop and closed the circuit,
	// because it over-charged or answered a malformed TOPUP_ACK.
	Stopped bool
	// LastReason is why the client stopped paying the hop, or else the
	// reason the hop gave (AckReason.String) when it last credited less
	// than a TOPUP offered; "" if neither happened.
	LastReason string
	// LastErr is the last payment failure, or nil.
	LastErr error
}

func newCircuit(cl *Client, c TopUpper, hops []Hop) *Circuit {
	pc := &Circuit{cl: cl, c: c, hops: make([]hopState, len(hops)), landed: make(chan struct{})}
	for i, h := range hops {
		pc.hops[i] = hopState{Hop: h, st: HopStats{Hop: h}, target: PrepayBytes, atOpen: c.HopCarried(h.Index)}
		pc.hops[i].limit.Store(windowLimit(0))
	}
	pc.window.Store(SessionGraceBytes)
	pc.wantWindow.Store(SessionGraceBytes)
	// Not derived from cl.ctx, so an unclosed Circuit is not pinned in the
	// client's context tree; each top-up watches both.
	pc.ctx, pc.cancel = context.WithCancel(context.Background())
	return pc
}

// Check looks at the hops' carried bytes (TopUpper.HopCarried) and starts a
// top-up, in the background, for every paid hop whose prepaid allowance
// fell below half its target, or that carried FirstTopUpAfterBytes since
// the circuit opened and was paid only its prepay (firstTopUpDue),
// unless one is running for it or it is waiting
// after a failure. It never blocks: it is meant to run on every read and
// write of a stream (Wrap does that), and the Client runs it every
// CheckInterval. After Close, or once a hop misbehaved, it does nothing.
func (pc *Circuit) Check() {
	if pc == nil || len(pc.hops) == 0 {
		return
	}
	var due [8]int
	start := due[:0]
	var now time.Time
	pc.mu.Lock()
	if pc.closed || pc.stopped {
		pc.mu.Unlock()
		return
	}
	w := pc.paidWindow()
	for i := range pc.hops {
		h := &pc.hops[i]
		if h.topping {
			continue
		}
		if carried := pc.c.HopCarried(h.Index); !needsTopUp(h.st.BytesPaid, carried, h.target, w, h.inflight) &&
			!firstTopUpDue(h.st.TopUps, h.atOpen, carried) {
			continue
		}
		if h.fails > 0 {
			if now.IsZero() {
				now = pc.cl.cfg.Now()
			}
			if now.Before(h.retryAt) {
				continue
			}
		}
		h.topping = true
		start = append(start, i)
	}
	pc.mu.Unlock()
	for _, i := range start {
		if !pc.start(i) {
			pc.mu.Lock()
			pc.hops[i].topping = false
			pc.mu.Unlock()
		}
	}
}

// start runs a top-up of hop i on a goroutine owned by the client and the
// circuit; false if either is closed.
func (pc *Circuit) start(i int) bool {
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
		pc.topUp(i)
	}()
	return true
}

// topUp pays hop i back up to TargetAheadBytes (refillBytes), then checks
// again if it succeeded (the hop may have carried more meanwhile) or
// schedules the retry if it failed.
func (pc *Circuit) topUp(i int) {
	ctx, cancel := context.WithTimeout(pc.cl.ctx, pc.cl.cfg.TopUpTimeout)
	defer cancel()
	defer context.AfterFunc(pc.ctx, cancel)()
	before := pc.c.HopCarried(pc.hops[i].Index)
	w := pc.paidWindow()
	began := pc.cl.cfg.Now()
	pc.mu.Lock()
	pc.hops[i].target = nextTarget(pc.hops[i].target)
	h := &pc.hops[i]
	bytes := refillBytes(h.st.BytesPaid, before, h.inflight, aheadTarget(h.target, w, h.st.BytesPaid, h.inflight))
	pc.mu.Unlock()
	err := pc.pay(ctx, i, bytes, pc.cl.cfg.ReserveTopUp)
	after := pc.c.HopCarried(pc.hops[i].Index)
	pc.mu.Lock()
	h.topping = false
	if err == nil {
		h.fails = 0
		h.inflight = after - min(before, after)
		took := pc.cl.cfg.Now().Sub(began)
		if h.minRTT == 0 || took < h.minRTT {
			h.minRTT = took
		}
		if want := wantWindow(h.inflight, took, pc.pathRTTLocked()); want > pc.wantWindow.Load() {
			pc.wantWindow.Store(want)
		}
	} else {
		h.fails++
		h.retryAt = pc.cl.cfg.Now().Add(retryDelay(h.fails))
	}
	fails, stopped := h.fails, pc.stopped || pc.closed
	pc.wakeLocked()
	pc.mu.Unlock()
	switch {
	case err == nil:
		pc.Check()
	case !stopped:
		pc.cl.log.Info("hop top-up failed; retrying later (the hop closes the circuit if its prepaid bytes and grace run out first)",
			"hop", pc.hops[i].Index+1, "peer", pc.hops[i].Peer, "failures", fails, "retry_in", retryDelay(fails), "err", err)
	}
}

// pay sends hop i vouchers worth bytes of traffic (reserved with reserve:
// ClientConfig.Reserve, or ReserveTopUp, which may round down) in one
// TOPUP, buying them first if the wallet holds too few, and checks the hop's TOPUP_ACK
// (verify). Vouchers are committed (marked spent) when the hop credited
// them, or refused them for good (AckReason.Permanent), and released
// otherwise: if the hop did redeem them after all, offering them again is
// refused as a double spend, so no voucher is ever counted twice.
func (pc *Circuit) pay(ctx context.Context, i int, bytes int64, reserve func(peer.ID, uint64) (Reservation, error)) error {
	h := pc.hops[i].Hop
	sats := SatsFor(bytes, h.PriceSatPerMB)
	r, err := reserve(h.Peer, sats)
	if buy := pc.cl.cfg.Buy; buy != nil && errors.Is(err, wallet.ErrInsufficient) {
		if berr := buy(ctx, h.Peer, max(sats, pc.cl.cfg.TargetBalanceSat)); berr != nil {
			return pc.failed(i, fmt.Errorf("buy vouchers from hop %d: %w", h.Index+1, berr))
		}
		r, err = reserve(h.Peer, sats)
	}
	// Vouchers worth sats that do not fit one batch (voucher.ErrAmount:
	// the wallet holds only small ones at this hop): pay less now, and
	// the next Check, run at once after a top-up lands, pays the rest.
	// Found in review: a 15-sat top-up with only 1-sat vouchers left
	// failed every retry while reads waited for it, and the download
	// crawled at one read per PaceWait.
	for errors.Is(err, voucher.ErrAmount) && sats > 1 {
		sats /= 2
		r, err = reserve(h.Peer, sats)
	}
	if err != nil {
		return pc.failed(i, fmt.Errorf("vouchers for hop %d: %w", h.Index+1, err))
	}
	offered := sats
	if r.Sats != 0 {
		// The hop credits what it redeems: the change buys bytes too,
		// and a top-up rounded down (ReserveTopUp) buys less.
		offered = r.Sats
	}
	out, err := pc.c.TopUp(ctx, h.Index, r.Payload)
	refused := errors.Is(err, circuit.ErrPayment) // TOPUP_ACK status 1
	if err != nil && (!refused || len(out) == 0) {
		// A refusal without a reason (a hop that takes no TOPUP): nothing
		// was credited. No answer (timeout, circuit closed): the hop may
		// have redeemed them, so they wait for the mint to say (unsure).
		if refused {
			pc.settle(r, false)
		} else {
			pc.unsure(r)
		}
		return pc.failed(i, fmt.Errorf("pay hop %d: %w", h.Index+1, err))
	}
	var ack Ack
	if perr := ack.UnmarshalBinary(out); perr != nil {
		pc.settle(r, !refused) // status 0 says it redeemed them
		return pc.stop(i, fmt.Errorf("pay hop %d: %w", h.Index+1, perr))
	}
	switch {
	case refused && ack.CreditedSat != 0:
		pc.settle(r, false)
		return pc.stop(i, fmt.Errorf("pay hop %d: %w: status 1 with %d sats credited", h.Index+1, ErrMalformedAck, ack.CreditedSat))
	case refused:
		pc.settle(r, ack.Reason.Permanent())
	default:
		pc.settle(r, true)
	}
	credited := min(ack.CreditedSat, offered)
	pc.mu.Lock()
	st := &pc.hops[i].st
	st.Allowance, st.Charged = ack.Allowance, ack.Charged
	if credited > 0 {
		st.SatsPaid += credited
		pc.setCreditLocked(i, min(st.BytesPaid+CreditBytes(credited, h.PriceSatPerMB), MaxAllowanceBytes))
		st.TopUps++
	}
	if ack.Reason != ReasonNone {
		st.LastReason = ack.Reason.String()
	}
	pc.mu.Unlock()
	if err := pc.verify(i, ack, offered); err != nil {
		return pc.stop(i, fmt.Errorf("pay hop %d: %w", h.Index+1, err))
	}
	if refused {
		return pc.failed(i, fmt.Errorf("pay hop %d: refused (%v): %w", h.Index+1, ack.Reason, err))
	}
	if ack.Reason != ReasonNone {
		pc.cl.log.Info("hop credited part of a top-up", "hop", h.Index+1, "peer", h.Peer,
			"credited_sat", credited, "offered_sat", offered, "reason", ack.Reason)
	}
	return nil
}

// verify checks hop i's TOPUP_ACK against the client's own counts: the
// bytes it charged against HopCarried (plus OverChargeToleranceBytes), the
// credit it holds against what its advertised price buys, and a full
// credit when it names no reason. Its error wraps ErrOverCharged or
// ErrMalformedAck.
func (pc *Circuit) verify(i int, ack Ack, offered uint64) error {
	h := pc.hops[i].Hop
	// Read after the TOPUP_ACK: every cell the hop charged before it
	// answered has reached us, but for the tolerance.
	carried := pc.c.HopCarried(h.Index)
	if ack.Charged > carried+OverChargeToleranceBytes {
		return fmt.Errorf("%w: charged %d bytes, the client counted %d", ErrOverCharged, ack.Charged, carried)
	}
	pc.mu.Lock()
	credit := pc.hops[i].st.BytesPaid
	pc.mu.Unlock()
	// The hop's allowance plus what it charged is what it credited in all
	// (ack.Charged < 2^63 and |Allowance| ≤ 2^50, so the sum fits).
	if held := ack.Allowance + int64(min(ack.Charged, MaxAllowanceBytes)); held < credit && held < MaxAllowanceBytes {
		return fmt.Errorf("%w: credited %d bytes in all, its advertised price (%d sat/MB) buys %d", ErrOverCharged, held, h.PriceSatPerMB, credit)
	}
	if ack.Reason == ReasonNone && ack.CreditedSat != offered {
		return fmt.Errorf("%w: credited %d of %d sats without a reason", ErrMalformedAck, ack.CreditedSat, offered)
	}
	return nil
}

// settle commits r's vouchers (spent, or worthless at this hop) or
// releases them to the wallet.
func (pc *Circuit) settle(r Reservation, commit bool) { settle(pc.cl.log, r, commit) }

// unsure hands r back to the wallet as offered with no answer, to be
// settled by the hop's mint before it is offered again.
func (pc *Circuit) unsure(r Reservation) { unsure(pc.cl.log, r) }

// failed records err against hop i and returns it.
func (pc *Circuit) failed(i int, err error) error {
	pc.mu.Lock()
	pc.hops[i].st.Failures++
	pc.hops[i].st.LastErr = err
	pc.mu.Unlock()
	return err
}

// stop records that hop i misbehaved (err wraps ErrOverCharged or
// ErrMalformedAck), stops paying every hop of the circuit, closes it and
// returns err.
func (pc *Circuit) stop(i int, err error) error {
	h := pc.hops[i].Hop
	pc.mu.Lock()
	st := &pc.hops[i].st
	st.Failures++
	st.LastErr = err
	st.Stopped = true
	st.OverCharged = st.OverCharged || errors.Is(err, ErrOverCharged)
	st.LastReason = err.Error()
	first := !pc.stopped
	pc.stopped = true
	pc.wakeLocked()
	pc.mu.Unlock()
	if first {
		pc.cl.log.Warn("hop misbehaved in a top-up; no longer paying it, closing the circuit",
			"hop", h.Index+1, "peer", h.Peer, "err", err)
		_ = pc.c.Close()
	}
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

// Close stops the circuit's top-ups, if any is running (its TOPUP fails
// and its vouchers are released), and waits for them to end. Later Checks
// do nothing. It does not close the TopUpper. Safe to call more than once.
func (pc *Circuit) Close() {
	if pc == nil {
		return
	}
	pc.mu.Lock()
	pc.closed = true
	pc.wakeLocked()
	pc.mu.Unlock()
	pc.cl.forget(pc)
	pc.cancel()
	pc.wg.Wait()
}

// wakeLocked wakes readers waiting in pace.
func (pc *Circuit) wakeLocked() {
	close(pc.landed)
	pc.landed = make(chan struct{})
}

// pace holds a reader of a wrapped stream while some paid hop has less
// than paceBytes (PaceBytes plus the widest stream window granted less the
// hop's grace) of credit left as the client counts it, until a top-up
// lands, the circuit closes or stops (or the TopUpper, if it has an Err
// method as *circuit.Circuit does, reports itself closed), or PaceWait
// passes (then it lets the read go: the hop may cut the circuit). This is
// the backpressure that keeps a fast transfer within the hop's grace: a
// stream's SENDMEs follow delivery to the reader (PROTOCOL.md §5.2), so
// while the reader waits the last hop can send at most one stream window
// (the widest the growth gate granted, allowsWindow) beyond what was
// delivered, and what was delivered is at most what the client counted.
func (pc *Circuit) pace() {
	var deadline time.Time
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for !pc.closed && !pc.stopped {
		short := false
		w := pc.window.Load()
		for i := range pc.hops {
			h := &pc.hops[i]
			if ahead(h.st.BytesPaid, pc.c.HopCarried(h.Index)) < paceBytes(h.st.BytesPaid, w) {
				short = true
				break
			}
		}
		if !short {
			return
		}
		if e, ok := pc.c.(interface{ Err() error }); ok && e.Err() != nil {
			// The circuit is gone: no top-up can land, and the reader
			// has only buffered data (or the error) left to take.
			return
		}
		now := pc.cl.cfg.Now()
		if deadline.IsZero() {
			deadline = now.Add(PaceWait)
		}
		if !now.Before(deadline) {
			return
		}
		ch := pc.landed
		pc.mu.Unlock()
		pc.Check() // starts the top-up if none is running
		t := time.NewTimer(deadline.Sub(now))
		select {
		case <-ch:
		case <-t.C:
		}
		t.Stop()
		pc.mu.Lock()
	}
}

// growthGater is the part of a TopUpper that can bound the growth of its
// streams' windows (circuit.Circuit.SetGrowthGate).
type growthGater interface {
	SetGrowthGate(gate func(window int64) bool)
}

var _ growthGater = (*circuit.Circuit)(nil)

// pathRTTLocked estimates the circuit's round trip to its last paid hop
// without queues, or 0 if it cannot: a top-up's round trip is the path's
// to the hop plus the hop's redemption (an fsync, tens of ms on a loaded
// machine, which must not count: on loopback it would make a path of a
// few ms look long), so it takes the differences of the shortest top-up
// round trips to successive paid hops, per link between them, and the
// smallest of them times the links to the farthest. Every difference
// must be positive: on loopback they are the hops' redemption times
// minus each other's, of either sign. pc.mu must be held.
func (pc *Circuit) pathRTTLocked() time.Duration {
	var prev *hopState
	var perLink time.Duration
	for i := range pc.hops {
		h := &pc.hops[i]
		if h.minRTT <= 0 {
			return 0
		}
		if prev != nil {
			if h.Index <= prev.Index || h.minRTT <= prev.minRTT {
				return 0
			}
			d := (h.minRTT - prev.minRTT) / time.Duration(h.Index-prev.Index)
			if perLink == 0 || d < perLink {
				perLink = d
			}
		}
		prev = h
	}
	if prev == nil {
		return 0
	}
	return perLink * time.Duration(prev.Index+1)
}

// setCreditLocked sets hop i's credit as the client counts it
// (BytesPaid) and the limit the growth gate reads. pc.mu must be held.
func (pc *Circuit) setCreditLocked(i int, bytes int64) {
	pc.hops[i].st.BytesPaid = bytes
	pc.hops[i].limit.Store(windowLimit(bytes))
}

// paidWindow is the stream window the schedule keeps paid ahead for: the
// wider of the one granted and the one the gate may grant next.
func (pc *Circuit) paidWindow() int64 {
	return max(pc.window.Load(), pc.wantWindow.Load())
}

// allowsWindow is the circuit's growth gate (PROTOCOL.md §5.3). A hop
// charges a cell when it passes it on, the client counts it when it
// arrives, and stream SENDMEs follow delivery to the reader, so the last
// hop can send at most one stream window beyond what the reader took,
// which is at most what the client counted. A paced reader (pace) stops
// while any hop's carried bytes plus the granted window pass its
// windowLimit (credit plus grace, less PaceBytes), so no hop is ever
// charged past credit plus grace. The gate grants a window beyond the
// base one (the grace covers that one) only if every hop has already
// been paid for it: carried + window + PaceBytes ≤ windowLimit, so after
// the widening the reader still has PaceBytes before it waits, and only
// up to the window the schedule pays ahead for (wantWindow: the
// bandwidth-delay product measured by the top-ups), so a fast loopback
// reader does not widen it, and raise the prepaid allowance, beyond what
// the path needs. It runs under a stream's lock: it only loads atomics
// (HopCarried is an atomic counter).
func (pc *Circuit) allowsWindow(window int64) bool {
	if window <= SessionGraceBytes {
		return true
	}
	if window > pc.wantWindow.Load() {
		return false
	}
	for i := range pc.hops {
		h := &pc.hops[i]
		carried := int64(min(pc.c.HopCarried(h.Index), MaxAllowanceBytes))
		if carried+window+PaceBytes > h.limit.Load() {
			return false
		}
	}
	for {
		w := pc.window.Load()
		if window <= w || pc.window.CompareAndSwap(w, window) {
			return true
		}
	}
}
