package mempool

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Entry is one transaction in the outbox.
type Entry struct {
	// TxID is the transaction's id in RPC hex (the key).
	TxID string `json:"txid"`
	// Raw is the serialized transaction.
	Raw []byte `json:"raw"`
	// MaxFeeRate (sat/kvB) travels in SUBMIT when HasMaxFeeRate.
	MaxFeeRate    uint64 `json:"max_fee_rate,omitempty"`
	HasMaxFeeRate bool   `json:"has_max_fee_rate,omitempty"`
	// Added is when Broadcast took it.
	Added time.Time `json:"added"`
	// Attempts counts delivery rounds so far.
	Attempts int `json:"attempts"`
	// AcceptedBy lists the delivery nodes (peer IDs) that accepted it, in
	// order; empty until the first acceptance.
	AcceptedBy []string `json:"accepted_by,omitempty"`
	// Next is when the next round (delivery or echo check) is due.
	Next time.Time `json:"next"`
	// LastError is the last round's failure, for status; for an entry
	// given up, why it was given up.
	LastError string `json:"last_error,omitempty"`
	// GaveUp is when the client gave up on it (age or attempt limit);
	// zero while it is queued.
	GaveUp time.Time `json:"gave_up,omitzero"`
}

// Accepted reports whether a delivery node has accepted the transaction.
func (e *Entry) Accepted() bool { return len(e.AcceptedBy) > 0 }

var (
	bucketTx     = []byte("tx")
	bucketGaveUp = []byte("gave_up") // entries given up, kept for status
)

// MaxGivenUp bounds the given-up entries kept for status; beyond it the
// one given up first is forgotten.
const MaxGivenUp = 100

// maxEntryJSON bounds a stored entry: a transaction of MaxTxBytes in
// base64 and a little bookkeeping.
const maxEntryJSON = 2*MaxTxBytes + 64<<10

// Outbox is the durable queue of transactions not yet delivered and
// echoed (bbolt, one file, fsynced at every commit). Every method is safe
// for concurrent use.
//
// Add, GiveUp, Update and Remove are on disk when they return. Writes
// that arrive while a commit is under way share the next one (group
// commit): a lone write commits at once, and many at once cost one
// commit, not one each, so that concurrent broadcasts do not queue behind
// each other's fsyncs. UpdateLater and RemoveLater are bookkeeping (a
// round's outcome, an echoed transaction leaving): they ride on the next
// commit, or are committed after LaterDelay, so that they do not each
// cost an fsync that a broadcast's Add would queue behind. Get commits
// those of its entry first; List and GivenUp may show them up to
// LaterDelay late; Close commits them. A crash loses at most LaterDelay of
// bookkeeping: the transaction is still queued and is sent (or
// echo-checked) again.
type Outbox struct {
	db  *bolt.DB
	max int

	// wmu is held by the write that leads a commit, from taking the
	// queued writes and deferred changes to its commit, so that a read
	// after Flush sees every change made before.
	wmu      sync.Mutex
	mu       sync.Mutex // guards queue, leading, later, inflight, timer, closed
	queue    []*write   // writes waiting for the next commit
	leading  bool       // a write leads (is committing, or has been handed the lead)
	later    []laterOp
	inflight []laterOp // taken by the write under way, not yet committed
	timer    *time.Timer
	closed   bool

	// commitFault, if set (tests), runs in commitGroup after the group's
	// writes; an error fails the whole group and rolls it back, as a
	// commit that fails (an fsync I/O error) would. Set before the Outbox
	// is used.
	commitFault func() error
}

// write is one caller's change waiting in the queue: fn, and its result.
type write struct {
	fn  func(tx *bolt.Tx) error
	err error // set before wake gets false
	// wake gets one value: false once the write is committed (or
	// failed; err says), true if it is to lead the next commit.
	wake chan bool
}

// LaterDelay bounds how long an UpdateLater or RemoveLater waits for a
// commit to ride on before it is committed alone.
const LaterDelay = 100 * time.Millisecond

// laterOp is one deferred change: f applied to txid's entry, or (f nil)
// its removal. An op whose entry is gone is dropped.
type laterOp struct {
	txid string
	f    func(*Entry)
}

// softErr reports a write's refusal that leaves the transaction clean
// (returned before any change), so that deferred changes still commit.
func softErr(err error) bool { return errors.Is(err, ErrUnknownTx) || errors.Is(err, errFull) }

// update runs fn in a write transaction after the deferred changes and
// returns once it is committed (or failed). fn may run more than once
// (see commitGroup) and must not block. A soft error of fn is returned
// with the rest committed; any other rolls fn's changes back.
//
// Group commit: fn joins the queue. With no commit under way its caller
// leads at once: it commits every queued write in one bbolt transaction
// (one fsync pair), hands each its result, and passes the lead to the
// first write that queued meanwhile, which commits those in turn. A
// write waits on its own channel, so the members of a group all wake at
// once rather than one after the other. No timer: a write arriving at an
// idle outbox commits at once.
func (o *Outbox) update(fn func(tx *bolt.Tx) error) error {
	w := &write{fn: fn, wake: make(chan bool, 1)}
	o.mu.Lock()
	o.queue = append(o.queue, w)
	lead := !o.leading
	o.leading = true
	o.mu.Unlock()
	if !lead && !<-w.wake {
		return w.err // a leader committed it
	}
	o.wmu.Lock()
	o.mu.Lock()
	group := o.queue // w is in it: only the leader takes the queue
	o.queue = nil
	o.mu.Unlock()
	o.commitGroup(group)
	o.wmu.Unlock()
	o.mu.Lock()
	if len(o.queue) > 0 {
		o.queue[0].wake <- true // its buffer is empty: it is in no group yet
	} else {
		o.leading = false
	}
	o.mu.Unlock()
	return w.err
}

// commitGroup commits the deferred changes and group's writes in one
// transaction, with wmu held, and hands each write its result. A write
// whose fn fails hard gets its error and is left out; the others run
// again in a new transaction (their fns see a clean state each time).
// A failure of the deferred changes or of the commit itself reaches every
// write of the group, and the deferred changes are requeued.
func (o *Outbox) commitGroup(group []*write) {
	ops := o.takeLater()
	defer func() {
		o.mu.Lock()
		o.inflight = nil
		o.mu.Unlock()
	}()
	finish := func(ws []*write, err error) {
		for _, w := range ws {
			if err != nil {
				w.err = err
			}
			w.wake <- false
		}
	}
	for {
		failed := -1
		err := o.db.Update(func(tx *bolt.Tx) error {
			if err := applyLater(tx, ops); err != nil {
				return err
			}
			for i, w := range group {
				w.err = w.fn(tx)
				if w.err != nil && !softErr(w.err) {
					failed = i
					return w.err
				}
			}
			if o.commitFault != nil {
				return o.commitFault()
			}
			return nil
		})
		switch {
		case err == nil:
			finish(group, nil)
			return
		case failed < 0: // the deferred changes or the commit
			o.requeue(ops)
			finish(group, err)
			return
		}
		finish(group[failed:failed+1], err)
		group = slices.Delete(group, failed, failed+1)
		if len(group) == 0 {
			o.requeue(ops) // nothing committed them
			return
		}
	}
}

func (o *Outbox) takeLater() []laterOp {
	o.mu.Lock()
	defer o.mu.Unlock()
	ops := o.later
	o.later, o.inflight = nil, ops
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	return ops
}

// requeue puts ops back in front of any deferred since, and arms the
// timer.
func (o *Outbox) requeue(ops []laterOp) {
	if len(ops) == 0 {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.later = append(ops, o.later...)
	o.armLocked()
}

func (o *Outbox) armLocked() {
	if o.timer == nil && !o.closed {
		o.timer = time.AfterFunc(LaterDelay, o.flushTimer)
	}
}

func (o *Outbox) flushTimer() {
	o.mu.Lock()
	closed := o.closed
	o.mu.Unlock()
	if !closed {
		_ = o.Flush() // a failure requeues and re-arms
	}
}

// Flush commits the deferred changes now (and waits for a write under
// way, which may hold some).
func (o *Outbox) Flush() error {
	o.mu.Lock()
	n := len(o.later)
	o.mu.Unlock()
	if n == 0 {
		o.wmu.Lock()
		o.wmu.Unlock() //nolint:staticcheck // a barrier: the write under way has committed
		return nil
	}
	return o.update(func(*bolt.Tx) error { return nil })
}

// flushFor commits the deferred changes if one of them is txid's, or
// waits for the write under way if it holds one.
func (o *Outbox) flushFor(txid string) {
	o.mu.Lock()
	mine := slices.ContainsFunc(o.later, func(op laterOp) bool { return op.txid == txid }) ||
		slices.ContainsFunc(o.inflight, func(op laterOp) bool { return op.txid == txid })
	o.mu.Unlock()
	if mine {
		_ = o.Flush()
	}
}

func applyLater(tx *bolt.Tx, ops []laterOp) error {
	b := tx.Bucket(bucketTx)
	for _, op := range ops {
		v := b.Get([]byte(op.txid))
		if v == nil {
			continue // removed meanwhile
		}
		if op.f == nil {
			if err := b.Delete([]byte(op.txid)); err != nil {
				return err
			}
			continue
		}
		e, err := decodeEntry(v)
		if err != nil {
			continue // a corrupt entry stays as it is; List skips it
		}
		op.f(&e)
		e.TxID = op.txid
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := b.Put([]byte(op.txid), nv); err != nil {
			return err
		}
	}
	return nil
}

// UpdateLater applies f to txid's entry with the next commit (at most
// LaterDelay from now); f may not change TxID. Nothing happens if the
// entry is gone by then.
func (o *Outbox) UpdateLater(txid string, f func(*Entry)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.later = append(o.later, laterOp{txid: txid, f: f})
	o.armLocked()
}

// RemoveLater deletes txid's entry with the next commit (at most
// LaterDelay from now).
func (o *Outbox) RemoveLater(txid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.later = append(o.later, laterOp{txid: txid})
	o.armLocked()
}

// OpenOutbox opens (or creates, mode 0600) the outbox at path, holding at
// most max entries (<= 0: DefaultMaxQueued). It fails if another process
// holds the file for more than two seconds.
func OpenOutbox(path string, max int) (*Outbox, error) {
	if max <= 0 {
		max = DefaultMaxQueued
	}
	// The freelist is rebuilt at open instead of written at every
	// commit: fewer pages per fsync on the broadcast path.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("mempool outbox %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketTx); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketGaveUp)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("mempool outbox: %w", err)
	}
	return &Outbox{db: db, max: max}, nil
}

// Close commits the deferred changes and closes the file. Safe to call
// twice.
func (o *Outbox) Close() error {
	ferr := o.Flush()
	o.mu.Lock()
	o.closed = true
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	o.mu.Unlock()
	return errors.Join(ferr, o.db.Close())
}

// errFull is returned by Add when the outbox holds its maximum.
var errFull = &Error{Code: CodeMisc, Message: "private broadcast queue is full"}

// Add stores e unless an entry with its txid is queued; it reports
// whether it added. It is on disk (fsynced) when Add returns. A given-up
// entry of the same txid is dropped: the user sent it again.
func (o *Outbox) Add(e Entry) (bool, error) { return o.AddStaged(e, nil) }

// AddStaged is Add that calls staged (if not nil) once the write has
// passed every check (not full, not a duplicate) and only its commit and
// fsync remain (the commit it shares with other writes, if any). staged
// must not block; it is called at most once. Add's result still says
// whether the commit reached the disk.
func (o *Outbox) AddStaged(e Entry, staged func()) (bool, error) {
	v, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	added, told := false, false
	err = o.update(func(tx *bolt.Tx) error {
		added = false // fn may run again (commitGroup)
		b := tx.Bucket(bucketTx)
		if b.Get([]byte(e.TxID)) != nil {
			return nil
		}
		if countKeys(b) >= o.max { // Stats would miss this commit's deferred removals
			return errFull
		}
		if err := tx.Bucket(bucketGaveUp).Delete([]byte(e.TxID)); err != nil {
			return err
		}
		if err := b.Put([]byte(e.TxID), v); err != nil {
			return err
		}
		added = true
		if staged != nil && !told {
			told = true
			staged()
		}
		return nil
	})
	return added, err
}

// GiveUp moves txid's entry from the queue to the given-up list, stamped
// with at and why (in LastError), and returns it; ErrUnknownTx if it is
// not queued. The list keeps the last MaxGivenUp.
func (o *Outbox) GiveUp(txid string, at time.Time, why string) (Entry, error) {
	var out Entry
	err := o.update(func(tx *bolt.Tx) error {
		b, g := tx.Bucket(bucketTx), tx.Bucket(bucketGaveUp)
		v := b.Get([]byte(txid))
		if v == nil {
			return ErrUnknownTx
		}
		e, err := decodeEntry(v)
		if err != nil {
			return err
		}
		e.GaveUp, e.LastError = at, why
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := b.Delete([]byte(txid)); err != nil {
			return err
		}
		if err := g.Put([]byte(txid), nv); err != nil {
			return err
		}
		out = e
		for countKeys(g) > MaxGivenUp {
			if err := g.Delete(oldestGivenUp(g)); err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// oldestGivenUp is the key of the entry given up first (an undecodable
// one first of all).
func oldestGivenUp(g *bolt.Bucket) []byte {
	var (
		key  []byte
		when time.Time
	)
	_ = g.ForEach(func(k, v []byte) error {
		e, err := decodeEntry(v)
		if err != nil {
			key, when = k, time.Time{}
			return errStop
		}
		if key == nil || e.GaveUp.Before(when) {
			key, when = k, e.GaveUp
		}
		return nil
	})
	return append([]byte(nil), key...)
}

var errStop = errors.New("stop")

// countKeys counts b's keys as the transaction sees them (Stats counts
// only what is committed).
func countKeys(b *bolt.Bucket) int {
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	return n
}

// GivenUp lists the given-up entries, in txid order.
func (o *Outbox) GivenUp() ([]Entry, error) {
	var es []Entry
	err := o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGaveUp).ForEach(func(k, v []byte) error {
			if e, err := decodeEntry(v); err == nil && e.TxID == string(k) {
				es = append(es, e)
			}
			return nil
		})
	})
	return es, err
}

// Update applies f to the entry of txid and stores the result; f may not
// change TxID. It returns ErrUnknownTx if there is no such entry (aborted
// or done meanwhile).
func (o *Outbox) Update(txid string, f func(*Entry)) (Entry, error) {
	var out Entry
	err := o.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTx)
		v := b.Get([]byte(txid))
		if v == nil {
			return ErrUnknownTx
		}
		e, err := decodeEntry(v)
		if err != nil {
			return err
		}
		f(&e)
		e.TxID = txid
		nv, err := json.Marshal(e)
		if err != nil {
			return err
		}
		out = e
		return b.Put([]byte(txid), nv)
	})
	return out, err
}

// Remove deletes txid's entry, queued or given up, and reports whether
// it was there.
func (o *Outbox) Remove(txid string) (bool, error) {
	found := false
	err := o.update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketTx, bucketGaveUp} {
			b := tx.Bucket(name)
			if b.Get([]byte(txid)) == nil {
				continue
			}
			found = true
			if err := b.Delete([]byte(txid)); err != nil {
				return err
			}
		}
		return nil
	})
	return found, err
}

// Get returns txid's entry.
func (o *Outbox) Get(txid string) (Entry, bool, error) {
	var e Entry
	found := false
	o.flushFor(txid) // this entry's deferred changes first (a failure requeues them)
	err := o.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTx).Get([]byte(txid))
		if v == nil {
			return nil
		}
		var err error
		e, err = decodeEntry(v)
		found = err == nil
		return err
	})
	return e, found, err
}

// List returns every entry, in txid order. An entry that does not decode
// (a corrupted file) is skipped and counted in bad.
func (o *Outbox) List() (es []Entry, bad int, err error) {
	err = o.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTx).ForEach(func(k, v []byte) error {
			e, err := decodeEntry(v)
			if err != nil || e.TxID != string(k) {
				bad++
				return nil
			}
			es = append(es, e)
			return nil
		})
	})
	return es, bad, err
}

func decodeEntry(v []byte) (Entry, error) {
	var e Entry
	if len(v) > maxEntryJSON {
		return e, errors.New("mempool outbox: entry too large")
	}
	if err := json.Unmarshal(v, &e); err != nil {
		return e, fmt.Errorf("mempool outbox: %w", err)
	}
	if _, err := CheckRawTx(e.Raw); err != nil {
		return e, errors.New("mempool outbox: entry holds no valid transaction")
	}
	return e, nil
}
