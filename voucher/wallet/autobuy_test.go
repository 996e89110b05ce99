package wallet

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestRefillDelay: the gaps between background purchase rounds stay within
// mean/10 .. 4×mean and average about 0.98×mean (VOUCHERS.md §3.8), and
// are not all alike.
func TestRefillDelay(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const mean = 30 * time.Second
	var sum time.Duration
	seen := map[time.Duration]bool{}
	const n = 100_000
	for range n {
		d := refillDelay(rng, mean)
		if d < mean/10 || d > 4*mean {
			t.Fatalf("delay %v outside %v..%v", d, mean/10, 4*mean)
		}
		sum += d
		seen[d] = true
	}
	avg := sum / n
	if avg < 95*mean/100 || avg > mean {
		t.Fatalf("mean delay %v, want about 0.98 × %v", avg, mean)
	}
	if len(seen) < n/2 {
		t.Fatalf("only %d distinct delays in %d", len(seen), n)
	}
}
