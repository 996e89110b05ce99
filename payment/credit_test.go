package payment

import (
	"math"
	"math/big"
	"testing"
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
		{PrepayBytes, 2, 17},
		{10_000_000, 0, 1},
		{PrepayBytes, 2_000_000, 16_777_216},
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
		for _, bytes := range []int64{1, 4096, 999_999, 1_000_000, PrepayBytes, topUpBytes(TopUpEveryBytes), 1 << 40} {
			sats := SatsFor(bytes, price)
			if got := CreditBytes(sats, price); got < bytes {
				t.Errorf("price %d: SatsFor(%d) = %d sats credits only %d bytes", price, bytes, sats, got)
			}
		}
	}
}

func TestTopUpBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ used, want int64 }{
		{-1, 0}, {0, 0}, {3, 3}, {4, 5}, {TopUpEveryBytes, 5 << 20}, {math.MaxInt64 / 2, math.MaxInt64/2 + math.MaxInt64/8},
	} {
		if got := topUpBytes(tc.used); got != tc.want {
			t.Errorf("topUpBytes(%d) = %d, want %d", tc.used, got, tc.want)
		}
	}
}
