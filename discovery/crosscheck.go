package discovery

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// CrossCheck asks witnesses (nil: up to 5 random peers with fresh adverts)
// for their cached copy of p's advert over ProtocolAdvert and compares each
// with ours. A copy signed by p with our sequence number but other bytes
// proves p shows different adverts to different clients (for instance a
// mint keyset per client): p's advert is dropped, p is ignored for 7 days,
// and the error wraps ErrEquivocation. A valid newer copy replaces ours.
// Witnesses that cannot answer, have no copy or send a bad one are skipped.
// It returns how many witnesses had a valid copy; it needs a fresh advert
// of p in the cache (else ErrNoAdvert). Call it before trusting a node
// with money (voucher purchases); it is not done automatically.
func (s *Service) CrossCheck(ctx context.Context, p peer.ID, witnesses []peer.ID) (int, error) {
	if _, err := s.running(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	st := s.peers[p]
	if st == nil || st.ad == nil || !st.ad.Fresh(s.cfg.Now()) {
		s.mu.Unlock()
		return 0, fmt.Errorf("cross-check: %w", ErrNoAdvert)
	}
	if witnesses == nil {
		var all []peer.ID
		for id, w := range s.peers {
			if id != p && w.ad != nil && w.ad.Fresh(s.cfg.Now()) {
				all = append(all, id)
			}
		}
		s.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		witnesses = all[:min(len(all), defaultWitnesses)]
	}
	s.mu.Unlock()

	had := 0
	for _, w := range witnesses {
		if w == p || w == s.h.ID() || ctx.Err() != nil {
			continue
		}
		env, _, err := s.request(ctx, peer.AddrInfo{ID: w}, p)
		if err != nil {
			s.log.Debug("cross-check witness gave no copy", "witness", w, "err", err)
			continue
		}
		theirs, err := OpenAdvert(env, s.cfg.Now())
		if err != nil || theirs.Peer != p {
			s.log.Debug("cross-check witness sent a bad copy", "witness", w, "err", err)
			continue
		}
		had++
		s.mu.Lock()
		st := s.peers[p]
		var ours []byte
		var seq uint64
		if st != nil {
			ours, seq = st.rec.Env, st.rec.MaxSeq
		}
		s.mu.Unlock()
		switch {
		case theirs.Seq == seq && ours != nil:
			same, err := sameBody(env, ours)
			if err != nil || same {
				continue // a re-encoded envelope of the same body proves nothing
			}
			s.mu.Lock()
			if st := s.peers[p]; st != nil {
				s.banLocked(p, st, env)
			}
			s.mu.Unlock()
			s.log.Debug("node equivocates", "peer", p, "seq", seq)
			return had, fmt.Errorf("cross-check %s: %w", p, ErrEquivocation)
		case theirs.Seq > seq:
			if _, err := s.accept(env, "", nil); err != nil {
				s.log.Debug("cross-check newer copy refused", "peer", p, "err", err)
			}
		}
	}
	return had, nil
}

// banLocked records that p signed two different bodies with one seq: ours
// (st.rec.Env) and other, both verified. It keeps both envelopes as the
// proof, forgets p's advert and refuses p's adverts, whatever their seq, for
// equivocationBackoff; the ban is persisted with the peer record.
func (s *Service) banLocked(p peer.ID, st *peerState, other []byte) {
	now := s.cfg.Now()
	if st.rec.Env != nil {
		st.rec.Proof = [][]byte{bytes.Clone(st.rec.Env), bytes.Clone(other)}
	}
	st.rec.BannedUntil = now.Add(equivocationBackoff)
	st.ad = nil
	st.rec.Env = nil
	st.rec.Fail++
	st.rec.LastFail = now
	s.dirty[p] = true
}

// EquivocationProof returns the two validly signed envelopes, with one
// sequence number and different bodies, that got p banned, and until when;
// nil if p is not banned.
func (s *Service) EquivocationProof(p peer.ID) ([][]byte, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.peers[p]
	if st == nil || !s.cfg.Now().Before(st.rec.BannedUntil) {
		return nil, time.Time{}
	}
	out := make([][]byte, len(st.rec.Proof))
	for i, e := range st.rec.Proof {
		out[i] = bytes.Clone(e)
	}
	return out, st.rec.BannedUntil
}
