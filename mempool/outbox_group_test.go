package mempool

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Writes that arrive while a commit is under way share the next commit
// (one fsync pair for all of them, not one each), each still learns its
// own result, and a write that fails hard fails alone: the rest of its
// group commits without it.
func TestOutboxGroupCommit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	path := filepath.Join(t.TempDir(), "o.db")
	o, err := OpenOutbox(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	entry := func(n uint32) Entry { return testEntry(t, n) }
	const queued = 6 // five Adds and one failing write wait behind the first
	before := lastCommit(t, o)

	// The first Add leads a commit and holds it (in its staged callback)
	// until the others have queued behind it.
	leading := make(chan struct{})
	firstDone := make(chan error, 1)
	go func() {
		_, err := o.AddStaged(entry(100), func() {
			close(leading)
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				o.mu.Lock()
				n := len(o.queue)
				o.mu.Unlock()
				if n == queued || ctx.Err() != nil {
					return
				}
				<-tick.C
			}
		})
		firstDone <- err
	}()
	select {
	case <-leading:
	case <-ctx.Done():
		t.Fatal("the first Add never reached its commit")
	}
	var wg sync.WaitGroup
	errs := make(chan error, queued)
	broken := errors.New("broken write")
	for i := range queued - 1 {
		e := entry(uint32(200 + i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			added, err := o.Add(e)
			if err == nil && !added {
				err = errors.New("not added")
			}
			errs <- err
		}()
	}
	wg.Add(1)
	var failErr error
	go func() {
		defer wg.Done()
		failErr = o.update(func(tx *bolt.Tx) error {
			// A change that must be rolled back with its failure.
			if err := tx.Bucket(bucketTx).Put([]byte("junk"), []byte("x")); err != nil {
				return err
			}
			return broken
		})
	}()
	wg.Wait()
	close(errs)
	if err := <-firstDone; err != nil {
		t.Fatalf("leading Add: %v", err)
	}
	for err := range errs {
		if err != nil {
			t.Fatalf("grouped Add: %v", err)
		}
	}
	if !errors.Is(failErr, broken) {
		t.Fatalf("failing write got %v, want its own error", failErr)
	}
	// One commit for the leader, then the group: its first try rolled
	// back at the broken write, the second committed the five Adds.
	if got := lastCommit(t, o) - before; got != 2 {
		t.Fatalf("%d commits for 1 + %d concurrent writes, want 2", got, queued)
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if o, err = OpenOutbox(path, 100); err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	es, bad, err := o.List()
	if err != nil || len(es) != queued || bad != 0 {
		t.Fatalf("after reopening: %d entries, %d bad, %v; want %d (the Adds, not the failed write's junk)", len(es), bad, err, queued)
	}
}
