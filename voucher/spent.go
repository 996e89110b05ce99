package voucher

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Spent-set buckets. bucketSpent holds one sub-bucket per keyset id, keyed
// by SpendID; bucketSpentExpiry maps keyset id → redeem_until (unix s) so
// Prune can drop a keyset's whole sub-bucket once it can no longer redeem.
var (
	bucketSpent       = []byte("spent")
	bucketSpentExpiry = []byte("spent-expiry")
)

// SpentEntry is one voucher to mark spent.
type SpentEntry struct {
	Keyset  KeysetID
	Expires time.Time // the keyset's RedeemUntil: the entry may be pruned after it
	ID      [32]byte  // Voucher.SpendID
}

// EntryFor returns the spent-set entry of v, which verified under ks.
func EntryFor(ks *Keyset, v *Voucher) SpentEntry {
	return SpentEntry{Keyset: ks.ID(), Expires: ks.RedeemUntil(), ID: v.SpendID()}
}

// DefaultMaxBatch is the default cap on spend requests per transaction.
const DefaultMaxBatch = 4096

// SpentSet is the durable set of spent vouchers. Spend group-commits: one
// committer goroutine gathers every request waiting at the moment it
// starts a transaction into that one bbolt transaction, whose commit is
// fsynced, and answers them all after the commit. Under load many
// redemptions share one fsync; idle, a lone request commits at once (no
// batching delay).
type SpentSet struct {
	db       *bolt.DB
	log      *slog.Logger
	maxBatch int

	reqs chan *spendReq // to the committer
	quit chan struct{}  // closed by Close
	done chan struct{}  // closed when the committer exits

	closeOnce sync.Once
	commits   atomic.Int64 // write transactions run (tests)
}

type spendReq struct {
	entries []SpentEntry
	fresh   []bool
	reply   chan error // buffered 1
}

// SpentOption configures a SpentSet.
type SpentOption func(*SpentSet) error

// WithSpentLogger sets the logger (default slog.Default()).
func WithSpentLogger(l *slog.Logger) SpentOption {
	return func(s *SpentSet) error {
		if l == nil {
			return fmt.Errorf("spent set: nil logger")
		}
		s.log = l
		return nil
	}
}

// WithMaxBatch caps the requests committed in one transaction (default
// DefaultMaxBatch).
func WithMaxBatch(n int) SpentOption {
	return func(s *SpentSet) error {
		if n < 1 {
			return fmt.Errorf("spent set: max batch %d", n)
		}
		s.maxBatch = n
		return nil
	}
}

// NewSpentSet creates the spent set's buckets in db and starts the
// committer. The caller owns db and must Close the SpentSet before closing
// db. db must not be opened with NoSync, or Spend's durability promise is
// void.
func NewSpentSet(db *bolt.DB, opts ...SpentOption) (*SpentSet, error) {
	s := &SpentSet{
		db:       db,
		log:      slog.Default(),
		maxBatch: DefaultMaxBatch,
		reqs:     make(chan *spendReq),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	s.log = s.log.With("subsys", "voucher/spent")
	if db.NoSync {
		return nil, fmt.Errorf("spent set: database opened with NoSync")
	}
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketSpent); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketSpentExpiry)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("spent set: create buckets: %w", err)
	}
	go s.commitLoop()
	return s, nil
}

// Close stops the committer after the transaction in progress; later Spend
// calls fail with ErrClosed. Safe to call more than once.
func (s *SpentSet) Close() error {
	s.closeOnce.Do(func() { close(s.quit) })
	<-s.done
	return nil
}

// Spend marks entries spent. When it returns nil the marks are on disk
// (fsynced); fresh[i] is false if entries[i] was spent before (or earlier
// in the same call). A call whose entries are all spent already writes
// nothing. ctx bounds only the wait to enter a transaction: once
// a request is handed to the committer Spend waits for its outcome, so a
// caller never credits a voucher whose mark might be lost nor forgets one
// that was marked.
func (s *SpentSet) Spend(ctx context.Context, entries []SpentEntry) (fresh []bool, err error) {
	if len(entries) == 0 {
		return nil, nil
	}
	select {
	case <-s.quit:
		return nil, ErrClosed
	default:
	}
	// A batch whose every entry is already spent (a replay) is answered
	// from a read transaction: no write, no fsync. The committer checks
	// again under its write lock, so a race only costs a write.
	if all, err := s.allSpent(entries); err != nil {
		return nil, fmt.Errorf("spend: %w", err)
	} else if all {
		return make([]bool, len(entries)), nil
	}
	r := &spendReq{entries: entries, fresh: make([]bool, len(entries)), reply: make(chan error, 1)}
	select {
	case s.reqs <- r:
	case <-s.quit:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("spend: %w", ctx.Err())
	}
	if err := <-r.reply; err != nil {
		return nil, err
	}
	return r.fresh, nil
}

// allSpent reports whether every entry is in the set, in one read
// transaction.
func (s *SpentSet) allSpent(entries []SpentEntry) (bool, error) {
	all := true
	err := s.db.View(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketSpent)
		for _, e := range entries {
			b := root.Bucket(e.Keyset[:])
			if b == nil || b.Get(e.ID[:]) == nil {
				all = false
				return nil
			}
		}
		return nil
	})
	return all, err
}

// IsSpent reports whether an entry is in the set.
func (s *SpentSet) IsSpent(e SpentEntry) (bool, error) {
	var spent bool
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketSpent).Bucket(e.Keyset[:]); b != nil {
			spent = b.Get(e.ID[:]) != nil
		}
		return nil
	})
	return spent, err
}

func (s *SpentSet) commitLoop() {
	defer close(s.done)
	batch := make([]*spendReq, 0, 64)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.quit:
			return
		}
	gather:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		err := s.commit(batch)
		if err != nil {
			s.log.Error("spent set commit failed", "requests", len(batch), "err", err)
			err = fmt.Errorf("spend: commit: %w", err)
		}
		for i, r := range batch {
			r.reply <- err
			batch[i] = nil
		}
	}
}

func (s *SpentSet) commit(batch []*spendReq) error {
	s.commits.Add(1)
	return s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketSpent)
		exp := tx.Bucket(bucketSpentExpiry)
		var last KeysetID
		var b *bolt.Bucket
		for _, r := range batch {
			for i, e := range r.entries {
				if b == nil || e.Keyset != last {
					var err error
					if b, err = root.CreateBucketIfNotExists(e.Keyset[:]); err != nil {
						return err
					}
					last = e.Keyset
					if exp.Get(e.Keyset[:]) == nil {
						if err := exp.Put(e.Keyset[:], binary.BigEndian.AppendUint64(nil, uint64(e.Expires.Unix()))); err != nil {
							return err
						}
					}
				}
				if b.Get(e.ID[:]) != nil {
					r.fresh[i] = false
					continue
				}
				if err := b.Put(e.ID[:], []byte{}); err != nil {
					return err
				}
				r.fresh[i] = true
			}
		}
		return nil
	})
}

// Prune deletes the entries of every keyset whose redemption window ended
// before now, and returns how many keysets it dropped. Verification refuses
// vouchers of such keysets (ErrExpired), so forgetting them is safe.
func (s *SpentSet) Prune(now time.Time) (int, error) {
	var n int
	err := s.db.Update(func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketSpent)
		exp := tx.Bucket(bucketSpentExpiry)
		var dead [][]byte
		err := exp.ForEach(func(k, v []byte) error {
			if len(v) == 8 && int64(binary.BigEndian.Uint64(v)) <= now.Unix() {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if root.Bucket(k) != nil {
				if err := root.DeleteBucket(k); err != nil {
					return err
				}
			}
			if err := exp.Delete(k); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune spent set: %w", err)
	}
	return n, nil
}

// ClaimTx marks every entry spent inside the caller's write transaction
// tx, or none of them: if any entry is spent already it writes nothing and
// returns claimed false with spent[i] true for each such entry. Entries
// must be distinct. tx must be a write transaction on the SpentSet's db;
// the marks are durable once the caller commits it. A mint swap uses it to
// spend its inputs and store its answer in one transaction (VOUCHERS.md
// §3.10). It bypasses the group committer: bbolt runs one writer at a
// time, so the two never interleave.
func (s *SpentSet) ClaimTx(tx *bolt.Tx, entries []SpentEntry) (spent []bool, claimed bool, err error) {
	root := tx.Bucket(bucketSpent)
	exp := tx.Bucket(bucketSpentExpiry)
	if root == nil || exp == nil {
		return nil, false, fmt.Errorf("claim: %w", ErrClosed)
	}
	spent = make([]bool, len(entries))
	any := false
	for i, e := range entries {
		if b := root.Bucket(e.Keyset[:]); b != nil && b.Get(e.ID[:]) != nil {
			spent[i], any = true, true
		}
	}
	if any {
		return spent, false, nil
	}
	for _, e := range entries {
		b, err := root.CreateBucketIfNotExists(e.Keyset[:])
		if err != nil {
			return nil, false, fmt.Errorf("claim: %w", err)
		}
		if exp.Get(e.Keyset[:]) == nil {
			if err := exp.Put(e.Keyset[:], binary.BigEndian.AppendUint64(nil, uint64(e.Expires.Unix()))); err != nil {
				return nil, false, fmt.Errorf("claim: %w", err)
			}
		}
		if err := b.Put(e.ID[:], []byte{}); err != nil {
			return nil, false, fmt.Errorf("claim: %w", err)
		}
	}
	return spent, true, nil
}
