package circuit

import (
	"sync/atomic"
	"time"
)

// Congestion-control constants (PROTOCOL.md §5.2), counted in DATA cells.
// They follow Tor's Vegas controller (proposal 324), scaled to 4 KiB cells
// and a circuit SENDME every circIncrement cells.
const (
	// circMaxWindow is the largest congestion window a sender may grow to,
	// and so the most DATA cells a receiver accepts in flight on one
	// circuit. 4096 cells (16 MiB) fill 100 Mbit/s at 1.3 s of RTT.
	circMaxWindow = 4096
	// circMinWindow is the smallest the window shrinks to when the RTT
	// shows cells queueing along the path: two SENDME increments, so that
	// one SENDME is always on its way while the next increment is sent.
	// Windows start at circWindow (2048).
	circMinWindow = 2 * circIncrement
	// vegasStep is how much the window moves per update once out of slow
	// start (Tor's cc_cwnd_inc).
	vegasStep = circIncrement
	// vegasAlpha, vegasBeta, vegasGamma and vegasDelta are the queue
	// thresholds, in cells: below alpha the window grows, above beta it
	// shrinks, above gamma slow start ends, above delta it is cut to the
	// estimated bandwidth-delay product plus delta. Whatever sits in
	// queues along the path beyond the relays' link schedulers (stream
	// and socket buffers) delays every other circuit's cells on the same
	// links, so they are small: one to three increments, 128 to 384 KiB.
	vegasAlpha = circIncrement
	vegasBeta  = 3 * circIncrement
	vegasGamma = 2 * circIncrement
	vegasDelta = 6 * circIncrement
	// vegasScaleFrom is the window above which the thresholds and the
	// step grow in proportion to it (vegas.thresholds).
	vegasScaleFrom = 512
	// streamMaxWindow is the largest a receiver lets one stream's window
	// grow by sending extra stream SENDMEs (§5.2).
	streamMaxWindow = 4096
	// streamMaxExtra is the most cells one circuit's receiver grants its
	// streams beyond streamWindow, all streams together.
	streamMaxExtra = circMaxWindow
)

// vegas is the congestion window of one circuit's sender: Tor's Vegas
// (proposal 324) driven by the RTT of each circuit SENDME. The window
// starts at the fixed window of old (circWindow) and never leaves [min,
// max]: min is circMinWindow, so that a circuit whose cells queue along
// the path (a bottleneck link, a busy relay) keeps few of them below the
// relays' link schedulers, where an interactive circuit's cells would wait
// behind them; max is bounded by circMaxWindow and by what the node's own
// circuit queue may hold. Not safe for concurrent use; endpoint.mu guards
// it.
type vegas struct {
	// shared, if set, is the smallest RTT any of this client's circuits
	// over the same path has seen (pathRTT).
	shared    *pathRTT
	cwnd      int
	min, max  int
	slowStart bool
	minRTT    time.Duration // smallest RTT seen; 0 before the first sample
	rtt       time.Duration // EWMA of RTT samples; 0 before the first sample
	untilNext int           // SENDMEs until the next steady-state update
}

// newVegas starts a window at init in slow start, bounded by [lo, hi];
// a hi below init keeps the window at or below init.
func newVegas(init, lo, hi int) *vegas {
	hi = max(hi, init)
	return &vegas{cwnd: init, min: lo, max: hi, slowStart: true}
}

// queue estimates how many of the window's cells sit in queues along the
// path: cwnd × (rtt − minRTT) / rtt (proposal 324, "Vegas").
func (v *vegas) queue() int {
	if v.rtt <= 0 || v.rtt <= v.minRTT {
		return 0
	}
	return int(int64(v.cwnd) * int64(v.rtt-v.minRTT) / int64(v.rtt))
}

// bdp estimates the bandwidth-delay product in cells: cwnd × minRTT / rtt.
func (v *vegas) bdp() int {
	if v.rtt <= 0 {
		return v.cwnd
	}
	return int(int64(v.cwnd) * int64(v.minRTT) / int64(v.rtt))
}

// onSendme takes one circuit SENDME whose acknowledged cell was sent rtt
// ago. A sample that is not positive (a clock that stood still or went
// back) is ignored and the window stays where it is.
func (v *vegas) onSendme(rtt time.Duration) {
	if rtt <= 0 {
		return
	}
	if v.minRTT == 0 || rtt < v.minRTT {
		v.minRTT = rtt
	}
	if v.shared != nil {
		v.minRTT = v.shared.observe(v.minRTT)
	}
	if v.rtt == 0 {
		v.rtt = rtt
	} else {
		// EWMA over about one window of SENDMEs, as Tor's ewma_cwnd_pct.
		n := int64(max(v.cwnd/circIncrement, 2))
		v.rtt = time.Duration((2*int64(rtt) + (n-1)*int64(v.rtt)) / (n + 1))
	}
	q := v.queue()
	alpha, beta, gamma, delta, step := v.thresholds()
	if v.slowStart {
		// Each acknowledged increment adds its size: the window doubles
		// per RTT until a queue forms.
		if q < gamma {
			v.cwnd += circIncrement
		} else {
			v.cwnd = v.bdp() + gamma
			v.slowStart = false
			v.untilNext = max(v.cwnd/circIncrement, 1)
		}
		v.clamp()
		if v.cwnd == v.max {
			v.slowStart = false
		}
		return
	}
	// Out of slow start the window moves once per window of SENDMEs.
	if v.untilNext--; v.untilNext > 0 {
		return
	}
	switch {
	case q > delta:
		v.cwnd = v.bdp() + delta - step
	case q > beta:
		v.cwnd -= step
	case q < alpha:
		v.cwnd += step
	}
	v.clamp()
	v.untilNext = max(v.cwnd/circIncrement, 1)
}

// thresholds returns alpha, beta, gamma, delta and the step for the
// current window: the constants up to a window of vegasScaleFrom cells,
// and in proportion to the window above it (at 2048 cells: 128, 384, 256,
// 768 and 128). A small window, as on a short path, keeps few cells
// queued; a window of thousands, as on a long fat path, is not cut by RTT
// jitter of a few percent, and grows by more than one increment per RTT.
func (v *vegas) thresholds() (alpha, beta, gamma, delta, step int) {
	k := max(v.cwnd, vegasScaleFrom)
	f := func(c int) int { return c * k / vegasScaleFrom }
	return f(vegasAlpha), f(vegasBeta), f(vegasGamma), f(vegasDelta), f(vegasStep)
}

func (v *vegas) clamp() {
	v.cwnd = min(max(v.cwnd, v.min), v.max)
}

// pathRTT is the smallest RTT seen by any of a client's circuits over one
// path (the same hops in the same order), which its circuits' Vegas take
// as their min_rtt (§5.2). Circuits that share a path share its queues,
// but one that started while they were full never sees the path empty:
// with its own min_rtt it takes the queue for path and keeps a window far
// larger than the others', and a larger share of the path. Held by the
// engine while a circuit uses it.
type pathRTT struct {
	min  atomic.Int64 // nanoseconds; 0 before the first sample
	refs int          // circuits using it; guarded by Engine.mu
	key  string       // in Engine.pathRTTs
}

// observe records d, a circuit's smallest RTT, and returns the path's.
func (p *pathRTT) observe(d time.Duration) time.Duration {
	for {
		cur := p.min.Load()
		if cur != 0 && time.Duration(cur) <= d {
			return time.Duration(cur)
		}
		if p.min.CompareAndSwap(cur, int64(d)) {
			return d
		}
	}
}
