package mempool

import (
	"path/filepath"
	"testing"
	"time"
)

// Deferred bookkeeping is seen by reads at once, rides on the next
// commit, and is on disk after Close; a deferred removal frees its slot
// for an Add of the same commit.
func TestOutboxLater(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := OpenOutbox(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(n uint32) Entry { return testEntry(t, n) }
	a, b := entry(30), entry(31)
	if _, err := o.Add(a); err != nil {
		t.Fatal(err)
	}
	o.UpdateLater(a.TxID, func(e *Entry) { e.AcceptedBy = []string{"n1"}; e.Attempts = 2 })
	if got, ok, err := o.Get(a.TxID); err != nil || !ok || !got.Accepted() || got.Attempts != 2 {
		t.Fatalf("read after UpdateLater: %+v %v %v", got, ok, err)
	}
	o.UpdateLater(a.TxID, func(e *Entry) { e.LastError = "x" })
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if o, err = OpenOutbox(path, 1); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if got, ok, _ := o.Get(a.TxID); !ok || got.LastError != "x" || !got.Accepted() {
		t.Fatalf("after reopen: %+v", got)
	}
	// Full (max 1) until a's deferred removal commits with b's Add.
	o.RemoveLater(a.TxID)
	if added, err := o.Add(b); err != nil || !added {
		t.Fatalf("add after RemoveLater: %v %v", added, err)
	}
	es, _, err := o.List()
	if err != nil || len(es) != 1 || es[0].TxID != b.TxID {
		t.Fatalf("list %+v %v", es, err)
	}
	// A deferred change of an entry that is gone is dropped.
	o.UpdateLater(a.TxID, func(e *Entry) { e.Attempts = 9 })
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := o.Get(a.TxID); ok {
		t.Fatal("a deferred update brought back a removed entry")
	}
}

// testEntry is an outbox entry for testTx(n), checked as Send checks it.
func testEntry(t testing.TB, n uint32) Entry {
	t.Helper()
	h, id := testTx(t, n, false)
	ck, err := CheckTx(h)
	if err != nil {
		t.Fatal(err)
	}
	return Entry{TxID: id, Raw: ck.Raw, Added: time.Now()}
}
