package payment

import (
	"math"
	"math/bits"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// The client's payment schedule (PROTOCOL.md §5.3). Everything that decides
// when a client pays and how much is in this file, so that changing the
// metering changes it only here.
//
// The client meters each paid hop in the hop's own unit: the RELAY cells it
// has carried for the circuit in either direction, cell.Size bytes each
// ((*circuit.Circuit).HopBytes, TopUpper.HopCarried). For hop i it keeps
// credit(i), the bytes the hop has credited (CreditBytes of the sats each
// TOPUP_ACK says were credited, at the hop's advertised price), and
// ahead(i) = credit(i) − carried(i), the prepaid allowance the client
// believes the hop still holds.
//
//   - At circuit build, before any stream, each paid hop is paid
//     refillBytes towards a target of PrepayBytes (1.5 MiB) plus what it
//     has carried already (the EXTEND cells of the build). Its first
//     top-up is due once it has carried FirstTopUpAfterBytes (128 KiB)
//     beyond what it carried at open, or its allowance fell below half
//     the target, whichever comes first. Each top-up then doubles the
//     hop's target, up to TargetAheadBytes (4 MiB): slow start, so a
//     short circuit (bitcoind's -proxyrandomize makes one per connection)
//     leaves at most about 1.5 MiB per hop prepaid and unused (rounded
//     up to whole sats: the vouchers' unit), and a long transfer at most
//     about TargetAheadBytes.
//   - Whenever ahead(i) < target(i)/2, hop i is paid refillBytes =
//     target − ahead(i) + min(inflight(i), target), where inflight(i) is
//     what the hop carried while its previous top-up was on its way (0
//     before the first). So each top-up pays exactly for the cells
//     carried since the last one, and the allowance lands back near the
//     target even when traffic outruns a top-up. The wallet's
//     denominations may overshoot; the overshoot is credited and lowers
//     the next top-up.
//   - Hops are checked whenever a wrapped stream reads or writes, and
//     every CheckInterval (cells nobody reads: keep-alives, unread
//     streams). At most one top-up per hop is in flight; a hop whose
//     top-up just succeeded is checked again at once (it may have carried
//     more meanwhile), and one whose top-up failed is not tried again
//     before retryDelay.
//
// The hop lets a session run SessionGraceBytes (2 MiB) into debt. On a
// fast path a top-up can take longer to land than the hop takes to carry
// the allowance left (on loopback under load a 50 MiB download outran
// 2 MiB, 4 MiB and 8 MiB alike), so the client paces: a wrapped stream's
// reader waits while any paid hop has less than PaceBytes of credit left
// (Circuit.pace), at most PaceWait. Stream SENDMEs follow delivery to the
// reader (PROTOCOL.md §5.2), so the last hop can then send at most one
// stream window beyond what was delivered, and what was delivered is at
// most what the client counted: reads wait while carried plus the widest
// window granted passes credit plus grace less PaceBytes (windowLimit),
// so the hop stays PaceBytes inside its grace however slow the top-up. A
// hop paid only its prepay has a smaller grace (at most what its sats
// buy, Ledger.Account, graceFor), so for it the reader waits earlier, by
// as much as its grace falls short (paceBytes): the same margin,
// whatever the prepay.
//
// Stream windows start at 512 cells (2 MiB, the grace). The growth gate
// (Circuit.allowsWindow) grants a wider one only when every hop has
// already been paid for it with PaceBytes to spare (windowAhead), and
// only up to the window the schedule pays ahead for (wantWindow: twice
// the bandwidth-delay product the top-ups measure, at most
// MaxPaidWindowBytes). Once that is wider than the base window, a hop is
// topped up below windowAhead plus two top-ups' traffic (needsTopUp) and
// back to windowAhead plus three and PaceBytes (aheadTarget), so a long,
// fat path's window grows with its bandwidth-delay product; at the base
// window (loopback, short circuits) the slow start above is all there
// is. (Several bulk streams on one circuit share the 8 MiB circuit
// window, which pacing alone does not bound below the grace.) At a circuit's end the client has paid each hop
// for what it carried plus the allowance it keeps ahead (at the base
// window at most target + inflight, so at most 2 × TargetAheadBytes; with
// a grown window about the window plus three top-ups' traffic) and a
// voucher's worth of overshoot, never a percentage of the traffic.

const (
	// TargetAheadBytes is the most the client keeps prepaid at each paid
	// hop, once a circuit has carried a few MiB: 4 MiB.
	TargetAheadBytes = 4 << 20
	// PrepayBytes is what a new circuit prepays at each paid hop beyond
	// the cells of its build, and the first target: 1.5 MiB, small but
	// safe from being cut for payment on a fast stream. A session opened
	// by a handshake payment gets a grace of at most what its sats buy
	// (Ledger.Account), so its credit plus grace is at least
	// 2 × PrepayBytes = 3 MiB: one stream window (512 cells, 2 MiB: the
	// most the last hop sends before the client's SENDME) plus 256 cells
	// of build, control and in-flight cells and of top-up latency. (At
	// 1.25 MiB, 3 sats at an exit, one download in about 25 was cut by its
	// exit for payment while the first top-up was on its way, on the
	// loaded 2-core VM.) With 1-sat vouchers that is 2 sats at 1 sat/MB
	// and 4 at 2 sat/MB (it was 3 and 5 at 2 MiB); a short connection pays
	// it and uses a few KiB (see FirstTopUpAfterBytes).
	PrepayBytes = 3 << 19
	// FirstTopUpAfterBytes: a hop paid only its prepay is first topped up
	// once it has carried this much beyond the cells it carried when the
	// circuit opened (the build): 128 KiB, 32 cells, far more than a
	// short connection's request and answer (bitcoind's -proxyrandomize
	// makes a circuit per connection), far less than the prepay. So short
	// connections never top up, and a download's first top-up starts
	// with nearly the whole prepay and grace still ahead, as much
	// headroom as 2 MiB prepaid gave at half its target.
	FirstTopUpAfterBytes = 128 << 10
	// LowWaterBytes is the low-water mark at the full target: a hop whose
	// prepaid allowance falls below it is topped up back to
	// TargetAheadBytes: 2 MiB. Below the full target the mark is half the
	// target.
	LowWaterBytes = TargetAheadBytes / 2
	// OverChargeToleranceBytes is how far a hop's TOPUP_ACK may report
	// more bytes charged than the client counted for it: 128 cells
	// (512 KiB). A hop charges a backward cell before it sends it, so
	// when it answers a TOPUP each of its senders (the relayed direction,
	// and at the last hop every stream, at most 64) may hold one cell it
	// has charged and not yet sent; the TOPUP_ACK overtakes those cells.
	OverChargeToleranceBytes = 128 * cell.Size
	// PaceBytes: a wrapped stream's reader waits while any paid hop has
	// less credit left than this, as the client counts it (Circuit.pace):
	// 256 KiB.
	PaceBytes = 256 << 10
	// MaxPaidWindowBytes is the widest stream window a paid circuit's
	// growth gate grants (Circuit.allowsWindow): 16 MiB, the widest a
	// stream grows to (PROTOCOL.md §5.2).
	MaxPaidWindowBytes = 16 << 20
	// PaceWait bounds one such wait: 10 s.
	PaceWait = 10 * time.Second
	// DefaultMaxPaidCircuitsPerMinute is ClientConfig's default cap on new
	// paid circuits: 60 a minute, bursts of 60 (bitcoind keeps about ten
	// outbound connections and opens a few a minute).
	DefaultMaxPaidCircuitsPerMinute = 60
	// DefaultCheckInterval is ClientConfig.CheckInterval's default: 1s.
	DefaultCheckInterval = time.Second
	// retryMin and retryMax bound the wait after a failed top-up before
	// the hop is tried again: retryMin doubling per consecutive failure up
	// to retryMax.
	retryMin = time.Second
	retryMax = time.Minute
)

// ahead is a hop's prepaid allowance as the client counts it: what the
// hop credited minus what it carried (negative in debt).
func ahead(credit int64, carried uint64) int64 {
	return credit - int64(min(carried, MaxAllowanceBytes))
}

// needsTopUp reports whether a hop that credited credit bytes and carried
// carried is below the low-water mark of its current target (half of it),
// or, once the circuit pays ahead for a stream window w wider than the
// base one, below what the growth gate needs for w (windowAhead) plus
// what the hop carried during its last top-up (inflight, at most w): so
// the top-up lands before reads would wait (pace) or the window stop
// growing. (Twice that paced a 100 ms-link download less, but left so
// much ahead on the loopback devnet, where a top-up's fsync makes
// inflight large, that TestE2EPaidCost's ratio went from 1.18× to 1.25–1.31×.)
func needsTopUp(credit int64, carried uint64, target, w int64, inflight uint64) bool {
	low := target / 2
	if w > SessionGraceBytes {
		low = max(low, windowAhead(w, credit)+int64(min(inflight, uint64(w))))
	}
	return ahead(credit, carried) < low
}

// aheadTarget is the allowance a top-up restores: the slow-start target
// (nextTarget), or, once the circuit pays ahead for a stream window w
// wider than the base one, if more: what the growth gate needs for w,
// plus twice what the hop carried during its last top-up (at most w) and
// PaceBytes, so a top-up lands a round trip's traffic and PaceBytes above
// the low-water mark (needsTopUp).
func aheadTarget(target, w, credit int64, inflight uint64) int64 {
	if w <= SessionGraceBytes {
		return target
	}
	return max(target, windowAhead(w, credit)+2*int64(min(inflight, uint64(w)))+PaceBytes)
}

// graceFor is the grace a hop gives a session that has credited credit
// bytes, as the client counts on it: SessionGraceBytes, or less for a
// session opened by a handshake payment worth less (Ledger.Account).
func graceFor(credit int64) int64 {
	return min(max(credit, 0), SessionGraceBytes)
}

// windowLimit is how far a hop that credited credit bytes may have carried
// plus the stream window, as the client counts both, before a wrapped
// stream's reader waits (pace): its credit plus grace less PaceBytes. The
// last hop can send at most one window beyond what the reader took, and
// the reader took at most what the client counted, so the hop's charge
// stays PaceBytes inside credit plus grace.
func windowLimit(credit int64) int64 {
	return max(credit, 0) + graceFor(credit) - PaceBytes
}

// windowAhead is the prepaid allowance a hop that credited credit bytes
// must hold for the growth gate to grant a stream window of w bytes
// (Circuit.allowsWindow: carried + w + PaceBytes ≤ windowLimit).
func windowAhead(w, credit int64) int64 {
	return w + 2*PaceBytes - graceFor(credit)
}

// wantWindow is the stream window a paid circuit pays ahead for after a
// top-up that took took while the hop carried inflight bytes, on a path
// whose round trip without queues is rtt (Circuit.pathRTTLocked): twice
// the bandwidth-delay product, the rate (inflight / took) times rtt,
// between the base window (SessionGraceBytes) and MaxPaidWindowBytes.
// While the window limits the stream and queues are short that doubles
// the window per round trip, as slow start does; once queues build (took
// grows, the rate does not) it stops, so a grown window, and the
// allowance kept ahead for it, stays near what the path carries.
func wantWindow(inflight uint64, took, rtt time.Duration) int64 {
	if took <= 0 || rtt <= 0 {
		return SessionGraceBytes
	}
	bdp := float64(min(inflight, MaxPaidWindowBytes)) * float64(rtt) / float64(took)
	return min(max(int64(2*bdp), SessionGraceBytes), MaxPaidWindowBytes)
}

// firstTopUpDue reports whether a hop paid only its prepay, which had
// carried atOpen when the circuit opened, has now carried enough
// (FirstTopUpAfterBytes more) to be topped up ahead of its low-water mark.
func firstTopUpDue(topUps int, atOpen, carried uint64) bool {
	return topUps <= 1 && carried >= atOpen+FirstTopUpAfterBytes
}

// paceBytes is the credit left, as the client counts it, below which a
// wrapped stream's reader waits for a hop's top-up (Circuit.pace), for a
// hop that has credited creditBytes in all: PaceBytes plus what the
// hop's grace falls short of a stream window. A hop gives a session
// opened by a handshake payment a grace of at most what its sats buy
// (Ledger.Account), so until its first top-up a prepaid hop's grace may
// be less than SessionGraceBytes; waiting that much earlier keeps what
// the last hop may send beyond what was delivered (one stream window)
// PaceBytes inside credit plus grace, as with the whole grace.
func paceBytes(creditBytes, window int64) int64 {
	return PaceBytes + window - graceFor(creditBytes)
}

// nextTarget is the allowance kept ahead after one more top-up: double the
// last, from PrepayBytes up to TargetAheadBytes (slow start, so a short
// circuit leaves little prepaid and unused).
func nextTarget(target int64) int64 {
	return min(max(2*target, PrepayBytes), TargetAheadBytes)
}

// refillBytes is what to pay a hop to bring its prepaid allowance back to
// target plus what it is expected to carry while the payment is on its
// way (inflight: what it carried during its previous top-up, capped at
// target); at least 1.
func refillBytes(credit int64, carried, inflight uint64, target int64) int64 {
	return max(target-ahead(credit, carried)+int64(min(inflight, uint64(target))), 1)
}

// retryDelay is how long a hop waits after its fails-th consecutive failed
// top-up (fails ≥ 1) before it is tried again.
func retryDelay(fails int) time.Duration {
	if fails > 6 {
		return retryMax
	}
	return min(retryMin<<max(fails-1, 0), retryMax)
}

// SatsFor is what bytes of traffic cost at priceSatPerMB (1 MB = 10^6
// bytes): ceil(bytes × price / 10^6), at least 1 sat, so a hop that credits
// floor(sats × 10^6 / price) bytes (CreditBytes) always credits at least
// bytes. Negative bytes count as 0. A cost beyond 2^64-1 sats saturates
// there (no wallet holds that much, so paying it fails).
func SatsFor(bytes int64, priceSatPerMB uint64) uint64 {
	if bytes < 0 {
		bytes = 0
	}
	hi, lo := bits.Mul64(uint64(bytes), priceSatPerMB)
	lo, carry := bits.Add64(lo, bytesPerMB-1, 0)
	hi += carry
	if hi >= bytesPerMB {
		return math.MaxUint64
	}
	q, _ := bits.Div64(hi, lo, bytesPerMB)
	return max(1, q)
}
