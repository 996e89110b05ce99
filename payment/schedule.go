package payment

import (
	"math"
	"math/bits"
)

// The client's payment schedule (PROTOCOL.md §5.3). Everything that decides
// when a client pays and how much is in this file, so that changing the
// metering changes it only here.
//
// A client pays each paid hop for PrepayBytes at the hop's advertised price
// when the circuit is built, before any stream. Then, whenever
// TopUpEveryBytes of stream data have crossed the circuit, it pays every
// paid hop for what was used plus 25 % (topUpBytes) for cell padding and
// flow-control cells, so each hop's allowance stays near PrepayBytes. A hop
// lets a session run SessionGraceBytes into debt, which covers the time a
// top-up takes.
const (
	// PrepayBytes is what a circuit prepays at each paid hop: 8 MiB.
	PrepayBytes = 8 << 20
	// TopUpEveryBytes is how much stream data starts a top-up: 4 MiB.
	TopUpEveryBytes = 4 << 20
)

// topUpBytes is what a top-up pays each hop for, given the stream bytes
// used since the last one began: used + 25 %, rounded down.
func topUpBytes(used int64) int64 {
	if used <= 0 {
		return 0
	}
	return used + used/4 // = floor(used*5/4), without overflow
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
