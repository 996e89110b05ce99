package discovery

import (
	"context"
	"errors"
	"fmt"
	"testing"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

func TestBoundedStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBoundedStore(3)
	key := func(i int) ds.Key { return ds.NewKey(fmt.Sprintf("/providers/k/%d", i)) }
	for i := 0; i < 3; i++ {
		if err := b.Put(ctx, key(i), []byte{1}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Put(ctx, key(3), []byte{1}); !errors.Is(err, errDHTStoreFull) {
		t.Fatalf("4th key: %v", err)
	}
	if err := b.Put(ctx, key(0), []byte{2}); err != nil {
		t.Fatalf("overwrite refused: %v", err)
	}
	if err := b.Put(ctx, key(9), make([]byte, maxDHTValueSize+1)); !errors.Is(err, errDHTStoreFull) {
		t.Fatalf("oversized value: %v", err)
	}
	if err := b.Delete(ctx, key(1)); err != nil {
		t.Fatal(err)
	}
	bt, _ := b.Batch(ctx)
	_ = bt.Put(ctx, key(4), []byte{1})
	_ = bt.Put(ctx, key(5), []byte{1})
	if err := bt.Commit(ctx); !errors.Is(err, errDHTStoreFull) {
		t.Fatalf("batch over cap: %v", err)
	}
	if b.len() != 3 {
		t.Fatalf("len %d, want 3", b.len())
	}
	r, err := b.Query(ctx, dsq.Query{Prefix: "/providers"})
	if err != nil {
		t.Fatal(err)
	}
	es, _ := r.Rest()
	if len(es) != 3 {
		t.Fatalf("query returned %d entries", len(es))
	}
}
