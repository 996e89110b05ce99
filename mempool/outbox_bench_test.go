package mempool

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkOutboxAdd measures the durable write on Broadcast's path (one
// bbolt commit, fsynced): serial is one writer, the baseline; writers-16
// is sixteen at once, as the sustained broadcasts of BenchmarkE2EMempool
// write, which group commit lets share commits (commits/op says how many
// each Add cost).
func BenchmarkOutboxAdd(b *testing.B) {
	h, _ := testTx(b, 0, true)
	c, err := CheckTx(h)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Uint64
	entry := func() Entry {
		return Entry{TxID: fmt.Sprintf("%s-%d", c.TxID, seq.Add(1)), Raw: c.Raw, Added: time.Now()}
	}
	for _, writers := range []int{1, 16} {
		name := "serial"
		if writers > 1 {
			name = fmt.Sprintf("writers-%d", writers)
		}
		b.Run(name, func(b *testing.B) {
			ob, err := OpenOutbox(filepath.Join(b.TempDir(), "o.db"), 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			defer ob.Close()
			work := make(chan struct{}, b.N)
			for range b.N {
				work <- struct{}{}
			}
			close(work)
			first := lastCommit(b, ob)
			b.ResetTimer()
			var wg sync.WaitGroup
			for range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range work {
						if _, err := ob.Add(entry()); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(lastCommit(b, ob)-first)/float64(b.N), "commits/op")
		})
	}
}

// lastCommit is the id of ob's last committed write transaction.
func lastCommit(tb testing.TB, ob *Outbox) int {
	tb.Helper()
	tx, err := ob.db.Begin(false)
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	return tx.ID()
}
