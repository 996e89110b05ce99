package discovery

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Onion-service descriptors (DISCOVERY.md §9). The public DHT stores no
// values of our own, so a descriptor lives on the HSDirs (rendezvous-role
// nodes) it was uploaded to through circuits, and each of them announces
// itself as a provider of a content key derived from the descriptor's
// index. The index is a hash of the period's blinded key: DHT observers
// see provider records for opaque keys that change every period.

// hsIndexKey is the content key of a descriptor index.
func hsIndexKey(index [32]byte) string { return "hs-desc/" + hex.EncodeToString(index[:]) }

// ProvideIndex announces this node as a holder of the descriptor with
// index (an HSDir after a successful upload).
func (s *Service) ProvideIndex(ctx context.Context, index [32]byte) error {
	d, err := s.running()
	if err != nil {
		return err
	}
	k := nameKey(hsIndexKey(index))
	if err := d.Provide(ctx, k, true); err != nil {
		return fmt.Errorf("provide descriptor index: %w", err)
	}
	// Whoever knows the onion address can compute the index and grind
	// IDs next to it for the period: store beyond them too (censor.go).
	s.provideBeyond(ctx, d, k.Hash())
	return nil
}

// FindIndex returns the verified adverts of up to max rendezvous-role
// nodes that announced the descriptor index (max <= 0: 64).
func (s *Service) FindIndex(ctx context.Context, index [32]byte, max int) ([]Advert, error) {
	return s.find(ctx, nameKey(hsIndexKey(index)), max, func(a *Advert) bool { return a.HasRole(RoleRendezvous) })
}

// Fresh returns copies of the cached fresh adverts that offer role.
func (s *Service) Fresh(role Role) []Advert {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	var out []Advert
	for _, st := range s.peers {
		if st.ad != nil && st.ad.Fresh(now) && st.ad.HasRole(role) && !badAt(s.bad, st.ad.Peer, now) {
			out = append(out, st.ad.Clone())
		}
	}
	return out
}

// Cached returns p's cached advert while it is fresh.
func (s *Service) Cached(p peer.ID) (Advert, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.peers[p]
	if st == nil || st.ad == nil || !st.ad.Fresh(s.cfg.Now()) {
		return Advert{}, false
	}
	return st.ad.Clone(), true
}

// badAt reports whether p is in the negative cache at now; s.mu held.
func badAt(bad map[peer.ID]time.Time, p peer.ID, now time.Time) bool {
	until, ok := bad[p]
	return ok && now.Before(until)
}
