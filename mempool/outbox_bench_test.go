package mempool

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkOutboxAdd measures the durable write on Broadcast's path (one
// bbolt commit, fsynced).
func BenchmarkOutboxAdd(b *testing.B) {
	ob, err := OpenOutbox(filepath.Join(b.TempDir(), "o.db"), 1<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer ob.Close()
	h, _ := testTx(b, 0, true)
	c, err := CheckTx(h)
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		i++
		e := Entry{TxID: c.TxID + string(rune('a'+i%26)) + time.Now().String(), Raw: c.Raw, Added: time.Now()}
		if _, err := ob.Add(e); err != nil {
			b.Fatal(err)
		}
	}
}
