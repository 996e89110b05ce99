package wallet

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/peer"
	bolt "go.etcd.io/bbolt"
)

// Keyset rules (VOUCHERS.md §1.3). A mint could tell its buyers apart by
// the keyset it signs them with: a keyset of their own, or a new one every
// few minutes so that each keyset names the few clients that bought while
// it was shown. The wallet buys only from a node whose published keysets
// pass every rule:
//
//   - at least one and at most MaxKeysetsPerNode are mintable now;
//   - every one mints for at least MinMintWindow (NotBefore..NotAfter);
//   - at most MaxNewKeysets were first seen at that node within the last
//     NewKeysetPeriod. First sightings are stored in the wallet file, so
//     a restart does not forget them.

// bucketSeen holds, per node (a sub-bucket named by the node's peer ID
// bytes), the keysets the wallet has seen it publish: keyset id →
// seenRecord.
var bucketSeen = []byte("keysets_seen")

type seenRecord struct {
	FirstSeen   time.Time
	RedeemUntil time.Time // after this an honest node no longer publishes it
}

// checkKeysets applies the keyset rules to what node publishes at now and
// returns the keysets mintable now. It first records the first sighting of
// every published keyset it has not seen before. A refusal wraps
// ErrKeysetChurn, ErrKeysetWindow or ErrUnpublishedKeyset (the node's
// fault); any other error is the wallet's store.
func (w *Wallet) checkKeysets(node peer.ID, published []*voucher.Keyset, now time.Time) ([]*voucher.Keyset, error) {
	recent, err := w.noteKeysets(node, published, now)
	if err != nil {
		return nil, fmt.Errorf("buy: %w", err)
	}
	if recent > w.cfg.MaxNewKeysets {
		return nil, fmt.Errorf("buy: %d keysets first seen in the last %v, at most %d allowed: %w",
			recent, w.cfg.NewKeysetPeriod, w.cfg.MaxNewKeysets, ErrKeysetChurn)
	}
	var mintable []*voucher.Keyset
	for _, ks := range published {
		if ks == nil {
			continue
		}
		if win := ks.NotAfter().Sub(ks.NotBefore()); win < w.cfg.MinMintWindow {
			return nil, fmt.Errorf("buy: keyset %s mints for %v, at least %v required: %w",
				ks.ID(), win, w.cfg.MinMintWindow, ErrKeysetWindow)
		}
		if ks.MintableAt(now) {
			mintable = append(mintable, ks)
		}
	}
	if len(mintable) == 0 || len(mintable) > w.cfg.MaxKeysetsPerNode {
		return nil, fmt.Errorf("buy: %d mintable keysets published, want 1 to %d: %w",
			len(mintable), w.cfg.MaxKeysetsPerNode, ErrUnpublishedKeyset)
	}
	return mintable, nil
}

// isKeysetRefusal reports whether err is checkKeysets blaming the node.
func isKeysetRefusal(err error) bool {
	return errors.Is(err, ErrKeysetChurn) || errors.Is(err, ErrKeysetWindow) || errors.Is(err, ErrUnpublishedKeyset)
}

// noteKeysets stores the first sighting (now) of every keyset in published
// not yet seen at node, and returns how many of node's keysets were first
// seen within NewKeysetPeriod before now, counting those just stored.
// Once that count is past MaxNewKeysets nothing more is stored for the
// node: the refusal already holds, and a node cannot grow the wallet file
// by publishing ever more keysets.
func (w *Wallet) noteKeysets(node peer.ID, published []*voucher.Keyset, now time.Time) (int, error) {
	if node == "" {
		return 0, errors.New("wallet: empty node id")
	}
	since := now.Add(-w.cfg.NewKeysetPeriod)
	recent := 0
	err := w.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketSeen).CreateBucketIfNotExists([]byte(node))
		if err != nil {
			return err
		}
		err = b.ForEach(func(k, v []byte) error {
			var r seenRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("wallet: corrupt keyset record %x: %w", k, err)
			}
			if r.FirstSeen.After(since) {
				recent++
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, ks := range published {
			if ks == nil {
				continue
			}
			id := ks.ID()
			if b.Get(id[:]) != nil || recent > w.cfg.MaxNewKeysets {
				continue
			}
			if err := putJSON(b, id[:], &seenRecord{FirstSeen: now, RedeemUntil: ks.RedeemUntil()}); err != nil {
				return err
			}
			recent++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("keyset sightings: %w", err)
	}
	return recent, nil
}

// pruneSeen deletes sightings that can no longer matter: first seen before
// the counting period and of a keyset past its redemption window (an
// honest node no longer publishes it; one that does again only counts it
// as new against itself). Empty node buckets go too. It returns how many
// sightings it deleted.
func pruneSeen(tx *bolt.Tx, now time.Time, period time.Duration) (int, error) {
	top := tx.Bucket(bucketSeen)
	since := now.Add(-period)
	var nodes [][]byte
	if err := top.ForEachBucket(func(k []byte) error {
		nodes = append(nodes, append([]byte(nil), k...))
		return nil
	}); err != nil {
		return 0, err
	}
	n := 0
	for _, node := range nodes {
		b := top.Bucket(node)
		var dead [][]byte
		left := 0
		err := b.ForEach(func(k, v []byte) error {
			var r seenRecord
			if json.Unmarshal(v, &r) == nil && !r.FirstSeen.After(since) && r.RedeemUntil.Before(now) {
				dead = append(dead, append([]byte(nil), k...))
			} else {
				left++
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return n, err
			}
		}
		n += len(dead)
		if left == 0 {
			if err := top.DeleteBucket(node); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}
