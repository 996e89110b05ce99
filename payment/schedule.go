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
//     refillBytes towards a target of PrepayBytes (2 MiB) plus what it has
//     carried already (the EXTEND cells of the build). Each top-up then
//     doubles the hop's target, up to TargetAheadBytes (4 MiB): slow
//     start, so a short circuit (bitcoind's -proxyrandomize makes one per
//     connection) leaves at most about 2 MiB per hop prepaid and unused,
//     and a long transfer at most about TargetAheadBytes.
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
// stream window (512 cells, 2 MiB: node gives a paying client fixed
// windows; grown ones reach 16 MiB) beyond what was delivered, and what was
// delivered is at most what the client counted: the hop stays within
// PaceBytes of its grace however slow the top-up. (Several bulk streams on
// one circuit share the 8 MiB circuit window, which pacing alone does not
// bound below the grace.) At a circuit's end the client has paid each hop
// for what it carried plus the allowance it keeps ahead (at most target +
// inflight, so at most 2 × TargetAheadBytes) and a voucher's worth of
// overshoot, never a percentage of the traffic.

const (
	// TargetAheadBytes is the most the client keeps prepaid at each paid
	// hop, once a circuit has carried a few MiB: 4 MiB.
	TargetAheadBytes = 4 << 20
	// PrepayBytes is what a new circuit prepays at each paid hop beyond
	// the cells of its build, and the first target: 2 MiB.
	PrepayBytes = 2 << 20
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
// carried is below the low-water mark of its current target (half of it).
func needsTopUp(credit int64, carried uint64, target int64) bool {
	return ahead(credit, carried) < target/2
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
