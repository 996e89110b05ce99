package discovery

import (
	"context"
	"fmt"

	"github.com/libp2p/go-libp2p/core/peer"
)

// Lookup returns p's current advert: the verified copy this client holds
// while it is fresh, otherwise one fetched from p over ProtocolAdvert (and
// verified, with the sequence rule, before it is returned). The voucher
// wallet uses it to learn a node's payee and keysets.
func (s *Service) Lookup(ctx context.Context, p peer.ID) (Advert, error) {
	if _, err := s.running(); err != nil {
		return Advert{}, err
	}
	now := s.cfg.Now()
	s.mu.Lock()
	st := s.peers[p]
	if st != nil && st.ad != nil && st.ad.Fresh(now) {
		ad := st.ad.Clone()
		s.mu.Unlock()
		return ad, nil
	}
	s.mu.Unlock()
	ad, err := s.fetch(ctx, s.h.Peerstore().PeerInfo(p))
	if err != nil {
		return Advert{}, fmt.Errorf("lookup %s: %w", p, err)
	}
	return ad, nil
}
