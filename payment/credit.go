package payment

import "math/bits"

// bytesPerMB is the MB of prices: 10^6 bytes (DISCOVERY.md prices).
const bytesPerMB = 1_000_000

// SessionGraceBytes is how far a paid session may run into debt before its
// first TOPUP or between top-ups: 2 MiB. It lets circuit setup and the
// first TOPUP through, and covers cells in flight while a top-up is on its
// way.
const SessionGraceBytes = 2 << 20

// MaxAllowanceBytes caps a session's allowance: 2^50 bytes (1 PiB). Credit
// beyond it is lost to the client, which never prepays anywhere near that
// (TargetAheadBytes is 4 MiB); the cap keeps every sum in an int64.
const MaxAllowanceBytes = 1 << 50

// CreditBytes is the allowance sats buy at priceSatPerMB: floor(sats ×
// 10^6 / price) bytes, computed in 128 bits so it never overflows, and
// capped at MaxAllowanceBytes. Price 0 means the hop is free: any sats buy
// MaxAllowanceBytes. Zero sats buy nothing.
func CreditBytes(sats, priceSatPerMB uint64) int64 {
	if sats == 0 {
		return 0
	}
	if priceSatPerMB == 0 {
		return MaxAllowanceBytes
	}
	hi, lo := bits.Mul64(sats, bytesPerMB)
	if hi >= priceSatPerMB {
		return MaxAllowanceBytes // the quotient needs more than 64 bits
	}
	q, _ := bits.Div64(hi, lo, priceSatPerMB)
	if q > MaxAllowanceBytes {
		return MaxAllowanceBytes
	}
	return int64(q)
}
