package voucher

import (
	"context"
	"encoding/binary"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// cpuMeter reports CPU time per op and ops per CPU-second.
type cpuMeter struct{ start time.Duration }

func startCPU() cpuMeter { return cpuMeter{start: processCPU()} }

func (m cpuMeter) report(b *testing.B, unit string) {
	cpu := processCPU() - m.start
	if cpu <= 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	b.ReportMetric(float64(b.N)/cpu.Seconds(), unit+"/cpu-s")
}

// Run on one core: go test -run XXX -bench . -cpu 1 ./voucher

func BenchmarkBlindSign(b *testing.B) {
	sk := testKeyset(b, testT0)
	key, _ := sk.Public().Key(8)
	bl, err := Blind(Seed{1}, 8, key)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	m := startCPU()
	for b.Loop() {
		if _, err := sk.BlindSign(8, bl.Msg); err != nil {
			b.Fatal(err)
		}
	}
	m.report(b, "signs")
}

func BenchmarkVerify(b *testing.B) {
	sk := testKeyset(b, testT0)
	v := mintOne(b, sk, 8)
	ks := sk.Public()
	b.ReportAllocs()
	m := startCPU()
	for b.Loop() {
		if err := ks.Verify(&v, testT0); err != nil {
			b.Fatal(err)
		}
	}
	m.report(b, "verifies")
}

// BenchmarkRedeem measures redemption as the node does it: verify the
// voucher's signature, then mark it spent durably (fsynced bbolt) before
// acknowledging. Many redemptions run concurrently (as from many circuits)
// so the spent set's committer groups them into shared transactions. Every
// op verifies a real signature (from a small pool of minted vouchers) and
// spends a distinct spent-set entry.
func BenchmarkRedeem(b *testing.B) {
	sk := testKeyset(b, testT0)
	ks := sk.Public()
	pool := make([]Voucher, 16)
	for i := range pool {
		pool[i] = mintOne(b, sk, 1<<(i%5))
	}
	db, s := openSpent(b, filepath.Join(b.TempDir(), "spent.db"))
	defer db.Close()
	defer s.Close()
	var ctr atomic.Uint64
	ctx := context.Background()
	b.SetParallelism(256)
	b.ResetTimer()
	m := startCPU()
	defer m.report(b, "redemptions")
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := ctr.Add(1)
			v := &pool[i%uint64(len(pool))]
			if err := ks.Verify(v, testT0); err != nil {
				b.Error(err)
				return
			}
			e := EntryFor(ks, v)
			binary.BigEndian.PutUint64(e.ID[:], i) // a distinct voucher per op
			fresh, err := s.Spend(ctx, []SpentEntry{e})
			if err != nil || !fresh[0] {
				b.Errorf("spend: %v %v", fresh, err)
				return
			}
		}
	})
}

// BenchmarkSpendSerial is the spent set without concurrency: one fsync per
// redemption, for comparison with BenchmarkRedeem.
func BenchmarkSpendSerial(b *testing.B) {
	db, s := openSpent(b, filepath.Join(b.TempDir(), "spent.db"))
	defer db.Close()
	defer s.Close()
	ctx := context.Background()
	var i uint64
	m := startCPU()
	defer m.report(b, "spends")
	for b.Loop() {
		i++
		if _, err := s.Spend(ctx, []SpentEntry{entry(1, i, testT0)}); err != nil {
			b.Fatal(err)
		}
	}
}
