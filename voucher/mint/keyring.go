package mint

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	bolt "go.etcd.io/bbolt"
)

func sortKeysets(ks []*voucher.Keyset) {
	slices.SortFunc(ks, func(a, b *voucher.Keyset) int {
		if c := a.NotBefore().Compare(b.NotBefore()); c != 0 {
			return c
		}
		ai, bi := a.ID(), b.ID()
		return bytes.Compare(ai[:], bi[:])
	})
}

// Rotate brings the keysets up to date with the clock (VOUCHERS.md §1.2):
// it drops keysets past their redemption window, makes a current keyset if
// none is mintable, and makes the next one (starting when the current one
// stops minting) once the current one is in the last quarter of its
// lifetime, so the next keyset is published well before clients need it.
// New keysets are stored before they are used. The housekeeper calls
// Rotate every HousekeepingInterval; New calls it once.
func (m *Mint) Rotate() error {
	m.rotateMu.Lock()
	defer m.rotateMu.Unlock()
	now := m.cfg.Now()
	changed := false

	m.mu.RLock()
	var dead []voucher.KeysetID
	for id, sk := range m.keysets {
		if !now.Before(sk.Public().RedeemUntil()) {
			dead = append(dead, id)
		}
	}
	m.mu.RUnlock()
	if len(dead) > 0 {
		err := m.db.Update(func(tx *bolt.Tx) error {
			for _, id := range dead {
				if err := tx.Bucket(bucketKeysets).Delete(id[:]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("rotate: drop expired keysets: %w", err)
		}
		m.mu.Lock()
		for _, id := range dead {
			delete(m.keysets, id)
		}
		m.mu.Unlock()
		changed = true
	}

	cur := m.current(now)
	if cur == nil {
		start := now.Truncate(time.Second)
		if err := m.addKeyset(start); err != nil {
			return err
		}
		changed = true
		cur = m.current(now)
	}
	end := cur.Public().NotAfter()
	if end.Sub(now) <= m.cfg.KeysetLifetime/4 && !m.hasKeysetFrom(end) {
		if err := m.addKeyset(end); err != nil {
			return err
		}
		changed = true
	}
	if changed && m.cfg.OnKeysets != nil {
		m.cfg.OnKeysets(m.Keysets())
	}
	return nil
}

func (m *Mint) hasKeysetFrom(start time.Time) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, sk := range m.keysets {
		if sk.Public().NotBefore().Unix() >= start.Unix() {
			return true
		}
	}
	return false
}

// addKeyset generates, stores and installs a keyset minting from start.
func (m *Mint) addKeyset(start time.Time) error {
	nb := unixTime(start.Unix())
	na := nb.Add(m.cfg.KeysetLifetime)
	sk, err := voucher.GenerateKeyset(m.cfg.Denominations, m.cfg.KeyBits, nb, na, na.Add(m.cfg.Grace), m.cfg.KeyGen)
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	enc, err := sk.MarshalBinary()
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	id := sk.Public().ID()
	err = m.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKeysets).Put(id[:], enc) })
	if err != nil {
		return fmt.Errorf("rotate: store keyset: %w", err)
	}
	m.mu.Lock()
	m.keysets[id] = sk
	m.mu.Unlock()
	m.log.Info("new keyset", "keyset", id, "not_before", nb, "not_after", na)
	return nil
}
