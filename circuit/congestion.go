package circuit

import "time"

// Congestion-control constants (PROTOCOL.md §5.2), counted in DATA cells.
// They follow Tor's Vegas controller (proposal 324), scaled to 4 KiB cells
// and a circuit SENDME every circIncrement cells.
const (
	// circMaxWindow is the largest congestion window a sender may grow to,
	// and so the most DATA cells a receiver accepts in flight on one
	// circuit. 4096 cells (16 MiB) fill 100 Mbit/s at 1.3 s of RTT.
	circMaxWindow = 4096
	// vegasStep is how much the window moves per update once out of slow
	// start (Tor's cc_cwnd_inc).
	vegasStep = 128
	// vegasAlpha, vegasBeta, vegasGamma and vegasDelta are the queue
	// thresholds, in cells: below alpha the window grows, above beta it
	// shrinks, above gamma slow start ends, above delta it is cut to the
	// estimated bandwidth-delay product plus delta.
	vegasAlpha = 128
	vegasBeta  = 384
	vegasGamma = 256
	vegasDelta = 768
	// streamMaxWindow is the largest a receiver lets one stream's window
	// grow by sending extra stream SENDMEs (§5.2).
	streamMaxWindow = 4096
	// streamMaxExtra is the most cells one circuit's receiver grants its
	// streams beyond streamWindow, all streams together.
	streamMaxExtra = circMaxWindow
)

// vegas is the congestion window of one circuit's sender: Tor's Vegas
// (proposal 324) driven by the RTT of each circuit SENDME. The window
// never leaves [min, max]: min is the fixed window of old (circWindow), so
// the controller only ever adds to it, and max is bounded by circMaxWindow
// and by what the node's own circuit queue may hold. Not safe for
// concurrent use; endpoint.mu guards it.
type vegas struct {
	cwnd      int
	min, max  int
	slowStart bool
	minRTT    time.Duration // smallest RTT seen; 0 before the first sample
	rtt       time.Duration // EWMA of RTT samples; 0 before the first sample
	untilNext int           // SENDMEs until the next steady-state update
}

// newVegas starts a window at lo in slow start, bounded by hi.
func newVegas(lo, hi int) *vegas {
	hi = max(hi, lo)
	return &vegas{cwnd: lo, min: lo, max: hi, slowStart: true}
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
	if v.rtt == 0 {
		v.rtt = rtt
	} else {
		// EWMA over about one window of SENDMEs, as Tor's ewma_cwnd_pct.
		n := int64(max(v.cwnd/circIncrement, 2))
		v.rtt = time.Duration((2*int64(rtt) + (n-1)*int64(v.rtt)) / (n + 1))
	}
	q := v.queue()
	if v.slowStart {
		// Each acknowledged increment adds its size: the window doubles
		// per RTT until a queue forms.
		if q < vegasGamma {
			v.cwnd += circIncrement
		} else {
			v.cwnd = v.bdp() + vegasGamma
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
	case q > vegasDelta:
		v.cwnd = v.bdp() + vegasDelta - vegasStep
	case q > vegasBeta:
		v.cwnd -= vegasStep
	case q < vegasAlpha:
		v.cwnd += vegasStep
	}
	v.clamp()
	v.untilNext = max(v.cwnd/circIncrement, 1)
}

func (v *vegas) clamp() {
	v.cwnd = min(max(v.cwnd, v.min), v.max)
}
