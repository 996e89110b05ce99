package payment

import (
	"math"
	"math/big"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// bigCredit is CreditBytes in arbitrary precision, the reference.
func bigCredit(sats, price uint64) int64 {
	if sats == 0 {
		return 0
	}
	if price == 0 {
		return MaxAllowanceBytes
	}
	q := new(big.Int).Mul(new(big.Int).SetUint64(sats), big.NewInt(bytesPerMB))
	q.Quo(q, new(big.Int).SetUint64(price))
	if q.Cmp(big.NewInt(MaxAllowanceBytes)) > 0 {
		return MaxAllowanceBytes
	}
	return q.Int64()
}

func TestCreditBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		sats, price uint64
		want        int64
	}{
		{"zero sats", 0, 2, 0},
		{"free hop", 1, 0, MaxAllowanceBytes},
		{"1 sat/MB", 1, 1, 1_000_000},
		{"2 sat/MB", 17, 2, 8_500_000},
		{"3 sat/MB rounds down", 1, 3, 333_333},
		{"10^6 sat/MB", 1, 1_000_000, 1},
		{"above 10^6 sat/MB, 1 sat buys less than a byte", 1, 2_000_000, 0},
		{"above 10^6 sat/MB", 3, 2_000_000, 1},
		{"above 10^6 sat/MB, many sats", 17_000_000, 2_000_000, 8_500_000},
		{"10^9 sat/MB", 8_388_608_000, 1_000_000_000, 8_388_608},
		{"huge sats capped", math.MaxUint64, 1, MaxAllowanceBytes},
		{"huge sats at huge price", math.MaxUint64, math.MaxUint64, 1_000_000},
		{"just under the cap", MaxAllowanceBytes / bytesPerMB, 1, MaxAllowanceBytes / bytesPerMB * bytesPerMB},
		{"128-bit product", 1 << 60, 1 << 40, 1_000_000 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := CreditBytes(tc.sats, tc.price)
			if got != tc.want {
				t.Errorf("CreditBytes(%d, %d) = %d, want %d", tc.sats, tc.price, got, tc.want)
			}
			if ref := bigCredit(tc.sats, tc.price); got != ref {
				t.Errorf("CreditBytes(%d, %d) = %d, big.Int says %d", tc.sats, tc.price, got, ref)
			}
		})
	}
}

func TestSatsFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		bytes int64
		price uint64
		want  uint64
	}{
		{0, 1, 1},
		{-5, 1, 1},
		{1, 1, 1},
		{1_000_000, 1, 1},
		{1_000_001, 1, 2},
		{PrepayBytes, 2, 4},
		{10_000_000, 0, 1},
		{PrepayBytes, 2_000_000, 3_145_728},
		{math.MaxInt64, 1_000_000, math.MaxInt64},
		{math.MaxInt64, math.MaxUint64, math.MaxUint64}, // saturates
	} {
		if got := SatsFor(tc.bytes, tc.price); got != tc.want {
			t.Errorf("SatsFor(%d, %d) = %d, want %d", tc.bytes, tc.price, got, tc.want)
		}
	}
}

// TestSatsForBuysAtLeastBytes: what a client pays for bytes (SatsFor) buys
// at least bytes at the hop (CreditBytes), at any price.
func TestSatsForBuysAtLeastBytes(t *testing.T) {
	t.Parallel()
	for _, price := range []uint64{1, 2, 3, 7, 999_999, 1_000_000, 1_000_001, 2_000_000, 123_456_789} {
		for _, bytes := range []int64{1, 4096, 999_999, 1_000_000, PrepayBytes, LowWaterBytes + 1, 1 << 40} {
			sats := SatsFor(bytes, price)
			if got := CreditBytes(sats, price); got < bytes {
				t.Errorf("price %d: SatsFor(%d) = %d sats credits only %d bytes", price, bytes, sats, got)
			}
		}
	}
}

func TestSchedule(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		credit    int64
		carried   uint64
		inflight  uint64
		wantNeeds bool
		wantPay   int64
	}{
		{0, 0, 0, true, TargetAheadBytes},
		{0, 3 * cell.Size, 0, true, TargetAheadBytes + 3*cell.Size},
		{TargetAheadBytes, TargetAheadBytes - LowWaterBytes, 0, false, LowWaterBytes},
		{TargetAheadBytes, TargetAheadBytes - LowWaterBytes + 1, 0, true, LowWaterBytes + 1},
		{TargetAheadBytes, TargetAheadBytes - LowWaterBytes + 1, 3 << 20, true, LowWaterBytes + 1 + 3<<20},
		{TargetAheadBytes, TargetAheadBytes - LowWaterBytes + 1, 1 << 40, true, LowWaterBytes + 1 + TargetAheadBytes},
		{TargetAheadBytes, TargetAheadBytes + SessionGraceBytes, 0, true, TargetAheadBytes + SessionGraceBytes},
		{2 * TargetAheadBytes, 0, 0, false, 1}, // far ahead: never below 1
		{MaxAllowanceBytes, math.MaxUint64, math.MaxUint64, true, 2 * TargetAheadBytes},
	} {
		if got := needsTopUp(tc.credit, tc.carried, TargetAheadBytes, SessionGraceBytes, 0); got != tc.wantNeeds {
			t.Errorf("needsTopUp(%d, %d) = %v", tc.credit, tc.carried, got)
		}
		if got := refillBytes(tc.credit, tc.carried, tc.inflight, TargetAheadBytes); got != tc.wantPay {
			t.Errorf("refillBytes(%d, %d, %d) = %d, want %d", tc.credit, tc.carried, tc.inflight, got, tc.wantPay)
		}
	}
	// Slow start: 1.5, 3, 4 MiB; the first low-water mark is 768 KiB.
	for i, want := range []int64{PrepayBytes, 3 << 20, 4 << 20, 4 << 20} {
		got := int64(PrepayBytes)
		for range i {
			got = nextTarget(got)
		}
		if got != want {
			t.Errorf("target after %d top-ups = %d, want %d", i, got, want)
		}
	}
	if needsTopUp(PrepayBytes, PrepayBytes/2, PrepayBytes, SessionGraceBytes, 0) || !needsTopUp(PrepayBytes, PrepayBytes/2+1, PrepayBytes, SessionGraceBytes, 0) {
		t.Error("the first low-water mark is not half of PrepayBytes")
	}
	// The first top-up comes after FirstTopUpAfterBytes beyond the build,
	// only while the hop was paid its prepay alone.
	for _, tc := range []struct {
		topUps          int
		atOpen, carried uint64
		want            bool
	}{
		{1, 3 * cell.Size, 3 * cell.Size, false},
		{1, 3 * cell.Size, 3*cell.Size + FirstTopUpAfterBytes - 1, false},
		{1, 3 * cell.Size, 3*cell.Size + FirstTopUpAfterBytes, true},
		{0, 0, FirstTopUpAfterBytes, true},
		{2, 0, 1 << 30, false},
	} {
		if got := firstTopUpDue(tc.topUps, tc.atOpen, tc.carried); got != tc.want {
			t.Errorf("firstTopUpDue(%d, %d, %d) = %v, want %v", tc.topUps, tc.atOpen, tc.carried, got, tc.want)
		}
	}
	// Pacing: with the whole grace, PaceBytes; a hop paid only its prepay
	// waits earlier by what its grace falls short of a window, so the
	// last hop stays PaceBytes inside credit plus grace; and reads wait
	// only after the first top-up is due (FirstTopUpAfterBytes beyond a
	// build of up to 8 cells).
	if got := paceBytes(SessionGraceBytes, SessionGraceBytes); got != PaceBytes {
		t.Errorf("paceBytes(the whole grace) = %d, want %d", got, PaceBytes)
	}
	for _, price := range []uint64{1, 2, 3, 7, 1000, 2_000_000} {
		credit := CreditBytes(SatsFor(PrepayBytes, price), price)
		grace := min(credit, SessionGraceBytes)
		pace := paceBytes(credit, SessionGraceBytes)
		if most := credit - pace + SessionGraceBytes; most > credit+grace-PaceBytes {
			t.Errorf("price %d: the last hop may charge %d, within %d of credit %d plus grace %d", price, most, credit+grace-most, credit, grace)
		}
		if due := credit - 8*cell.Size - FirstTopUpAfterBytes; due <= pace {
			t.Errorf("price %d: reads wait at %d bytes ahead, before the first top-up is due at %d", price, pace, due)
		}
	}
	// A short connection's few KiB never top up; a prepaid hop's credit
	// plus the grace it gets covers a stream window and 128 cells.
	if FirstTopUpAfterBytes >= PrepayBytes/2 || 2*PrepayBytes < SessionGraceBytes+256*cell.Size {
		t.Errorf("PrepayBytes %d and FirstTopUpAfterBytes %d: the first top-up would not come early, or credit and grace would not cover a window", PrepayBytes, FirstTopUpAfterBytes)
	}
	for fails, want := range []time.Duration{retryMin, retryMin, 2 * retryMin, 4 * retryMin, 8 * retryMin, 16 * retryMin, 32 * retryMin, retryMax, retryMax} {
		if got := retryDelay(fails); got != want {
			t.Errorf("retryDelay(%d) = %v, want %v", fails, got, want)
		}
	}
}
