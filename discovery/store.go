package discovery

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// cacheFile is the bbolt file under Config.CacheDir.
const cacheFile = "discovery.db"

var (
	bucketPeers  = []byte("peers")
	bucketGuards = []byte("guards")
	keyGuardList = []byte("list")
	keyOwnSeq    = []byte("own_seq") // in bucketGuards: our last published seq
	keySince     = []byte("since")   // in bucketGuards: the earliest FirstSeen ever recorded
)

// peerRecord is what the cache keeps per peer (DISCOVERY.md §5). Env is the
// signed advert exactly as received, re-verified on load.
type peerRecord struct {
	Env       []byte    `json:"env,omitempty"`
	Observed  []byte    `json:"observed,omitempty"` // binary multiaddr we reached it on
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	MaxSeq    uint64    `json:"max_seq"`
	OK        uint32    `json:"ok"`
	Fail      uint32    `json:"fail"`
	LastFail  time.Time `json:"last_fail,omitzero"`
	LastOK    time.Time `json:"last_ok,omitzero"`
	// Stake is this client's verdict on the peer's stake proof (nil: none
	// checked).
	Stake *stakeRecord `json:"stake,omitempty"`
	// BannedUntil is set when the peer was caught equivocating; Proof holds
	// the two validly signed envelopes with one seq and different bodies.
	// Both survive new sequence numbers and restarts.
	BannedUntil time.Time `json:"banned_until,omitzero"`
	Proof       [][]byte  `json:"equivocation_proof,omitempty"`
}

// guardEntry is one persistent entry guard.
type guardEntry struct {
	Peer       peer.ID   `json:"peer"`
	Added      time.Time `json:"added"`
	LastListed time.Time `json:"last_listed"`
	// Lifetime is the randomised time after Added when it is rotated out
	// (0 in old caches: DefaultGuardLifetime).
	Lifetime time.Duration `json:"lifetime,omitempty"`
}

// cache is the on-disk advert and guard store. A nil *cache is a valid
// no-op store (Config.CacheDir empty). Its methods are called with the
// Service mutex held, so it needs no lock of its own.
type cache struct {
	db *bolt.DB
}

// openCache opens (creating) the cache under dir with mode 0600.
func openCache(dir string) (*cache, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("discovery cache: %w", err)
	}
	db, err := bolt.Open(filepath.Join(dir, cacheFile), 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("discovery cache: %w", err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketPeers); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketGuards)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("discovery cache: %w", err)
	}
	return &cache{db: db}, nil
}

func (c *cache) close() error {
	if c == nil {
		return nil
	}
	return c.db.Close()
}

// loadPeers returns every stored record; undecodable ones are skipped.
func (c *cache) loadPeers() (map[peer.ID]*peerRecord, error) {
	out := map[peer.ID]*peerRecord{}
	if c == nil {
		return out, nil
	}
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPeers).ForEach(func(k, v []byte) error {
			id, err := peer.IDFromBytes(k)
			if err != nil || len(v) > 2*MaxEnvelopeSize {
				return nil
			}
			var r peerRecord
			if json.Unmarshal(v, &r) == nil {
				out[id] = &r
			}
			return nil
		})
	})
	return out, err
}

// writePeers stores each record, or deletes the peer where it is nil, in one
// transaction.
func (c *cache) writePeers(recs map[peer.ID]*peerRecord) error {
	if c == nil {
		return nil
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPeers)
		for id, r := range recs {
			if r == nil {
				if err := b.Delete([]byte(id)); err != nil {
					return err
				}
				continue
			}
			v, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(id), v); err != nil {
				return err
			}
		}
		return nil
	})
}

func (c *cache) loadGuards() ([]guardEntry, error) {
	if c == nil {
		return nil, nil
	}
	var out []guardEntry
	err := c.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketGuards).Get(keyGuardList)
		if v == nil {
			return nil
		}
		return json.Unmarshal(v, &out)
	})
	return out, err
}

func (c *cache) putGuards(g []guardEntry) error {
	if c == nil {
		return nil
	}
	v, err := json.Marshal(g)
	if err != nil {
		return err
	}
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketGuards).Put(keyGuardList, v) })
}

// loadOwnSeq returns the highest seq this node has published (0 if none).
func (c *cache) loadOwnSeq() uint64 {
	if c == nil {
		return 0
	}
	var seq uint64
	_ = c.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketGuards).Get(keyOwnSeq); len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return seq
}

// putOwnSeq records seq as the highest this node has published.
func (c *cache) putOwnSeq(seq uint64) error {
	if c == nil {
		return nil
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketGuards).Put(keyOwnSeq, binary.BigEndian.AppendUint64(nil, seq))
	})
}

// loadSince returns the earliest FirstSeen this cache ever recorded (zero
// if none was stored).
func (c *cache) loadSince() time.Time {
	if c == nil {
		return time.Time{}
	}
	var t time.Time
	_ = c.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketGuards).Get(keySince); v != nil {
			if err := t.UnmarshalBinary(v); err != nil {
				t = time.Time{}
			}
		}
		return nil
	})
	return t
}

// putSince records t as the earliest FirstSeen ever recorded.
func (c *cache) putSince(t time.Time) error {
	if c == nil {
		return nil
	}
	v, err := t.MarshalBinary()
	if err != nil {
		return err
	}
	return c.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketGuards).Put(keySince, v) })
}
