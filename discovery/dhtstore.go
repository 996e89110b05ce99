package discovery

import (
	"context"
	"errors"
	"sync"

	ds "github.com/ipfs/go-datastore"
	dsq "github.com/ipfs/go-datastore/query"
)

// errDHTStoreFull is returned to the DHT when a peer tries to make this node
// store more records than the cap. The DHT turns it into a failed request.
var errDHTStoreFull = errors.New("discovery: dht record store full")

// maxDHTValueSize bounds one stored DHT record (provider entries are a few
// bytes; IPNS and public-key records in ipfs mode are well under this).
const maxDHTValueSize = 16 << 10

// boundedStore is the in-memory datastore behind this node's DHT server. It
// holds provider records (and, in ipfs mode, /pk and /ipns values) that other
// peers ask us to keep, so it refuses new keys beyond a fixed count and
// values beyond maxDHTValueSize: a flood costs the flooder, not our memory.
type boundedStore struct {
	// mu guards m; MapDatastore is not safe for concurrent use.
	mu  sync.Mutex
	m   *ds.MapDatastore
	max int
	n   int // number of keys in m; guarded by mu
}

var _ ds.Batching = (*boundedStore)(nil)

func newBoundedStore(max int) *boundedStore {
	return &boundedStore{m: ds.NewMapDatastore(), max: max}
}

func (b *boundedStore) Put(ctx context.Context, k ds.Key, v []byte) error {
	if len(v) > maxDHTValueSize {
		return errDHTStoreFull
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	has, _ := b.m.Has(ctx, k)
	if !has {
		if b.n >= b.max {
			return errDHTStoreFull
		}
		b.n++
	}
	return b.m.Put(ctx, k, v)
}

func (b *boundedStore) Delete(ctx context.Context, k ds.Key) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if has, _ := b.m.Has(ctx, k); has {
		b.n--
	}
	return b.m.Delete(ctx, k)
}

func (b *boundedStore) Get(ctx context.Context, k ds.Key) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Get(ctx, k)
}

func (b *boundedStore) Has(ctx context.Context, k ds.Key) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.Has(ctx, k)
}

func (b *boundedStore) GetSize(ctx context.Context, k ds.Key) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m.GetSize(ctx, k)
}

// Query materialises its results under the lock (MapDatastore copies).
func (b *boundedStore) Query(ctx context.Context, q dsq.Query) (dsq.Results, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, err := b.m.Query(ctx, q)
	if err != nil {
		return nil, err
	}
	es, err := r.Rest()
	if err != nil {
		return nil, err
	}
	return dsq.ResultsWithEntries(q, es), nil
}

func (b *boundedStore) Sync(context.Context, ds.Key) error { return nil }
func (b *boundedStore) Close() error                       { return nil }

// Batch applies writes one by one through Put and Delete, so the cap holds.
func (b *boundedStore) Batch(context.Context) (ds.Batch, error) { return ds.NewBasicBatch(b), nil }

// len reports the number of stored records.
func (b *boundedStore) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}
