package mempool

import (
	"encoding/json"
	"errors"
	"fmt"
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
	// LastError is the last round's failure, for status.
	LastError string `json:"last_error,omitempty"`
}

// Accepted reports whether a delivery node has accepted the transaction.
func (e *Entry) Accepted() bool { return len(e.AcceptedBy) > 0 }

var bucketTx = []byte("tx")

// maxEntryJSON bounds a stored entry: a transaction of MaxTxBytes in
// base64 and a little bookkeeping.
const maxEntryJSON = 2*MaxTxBytes + 64<<10

// Outbox is the durable queue of transactions not yet delivered and
// echoed (bbolt, one file, fsynced at every change). Every method is safe
// for concurrent use.
type Outbox struct {
	db  *bolt.DB
	max int
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
		_, err := tx.CreateBucketIfNotExists(bucketTx)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("mempool outbox: %w", err)
	}
	return &Outbox{db: db, max: max}, nil
}

// Close closes the file. Safe to call twice.
func (o *Outbox) Close() error { return o.db.Close() }

// errFull is returned by Add when the outbox holds its maximum.
var errFull = &Error{Code: CodeMisc, Message: "private broadcast queue is full"}

// Add stores e unless an entry with its txid exists; it reports whether
// it added. It is on disk (fsynced) when Add returns.
func (o *Outbox) Add(e Entry) (bool, error) {
	v, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	added := false
	err = o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTx)
		if b.Get([]byte(e.TxID)) != nil {
			return nil
		}
		if b.Stats().KeyN >= o.max {
			return errFull
		}
		added = true
		return b.Put([]byte(e.TxID), v)
	})
	return added, err
}

// Update applies f to the entry of txid and stores the result; f may not
// change TxID. It returns ErrUnknownTx if there is no such entry (aborted
// or done meanwhile).
func (o *Outbox) Update(txid string, f func(*Entry)) (Entry, error) {
	var out Entry
	err := o.db.Update(func(tx *bolt.Tx) error {
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

// Remove deletes txid's entry and reports whether it was there.
func (o *Outbox) Remove(txid string) (bool, error) {
	found := false
	err := o.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTx)
		if b.Get([]byte(txid)) == nil {
			return nil
		}
		found = true
		return b.Delete([]byte(txid))
	})
	return found, err
}

// Get returns txid's entry.
func (o *Outbox) Get(txid string) (Entry, bool, error) {
	var e Entry
	found := false
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
