package discovery

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// CrossCheck asks witnesses (nil: up to 5 random peers with fresh adverts)
// for their cached copy of p's advert over ProtocolAdvert and compares the
// signed bodies with ours. A validly signed body other than ours under our
// sequence number proves p shows different adverts to different clients
// (for instance a mint keyset per client): p is banned with the proof kept
// (banLocked) and the error wraps ErrEquivocation. A valid newer copy
// replaces ours. Witnesses that cannot answer within 3 s, have no copy or
// send a bad one are skipped.
//
// So that witnesses do not learn which node the client is about to pay, p
// is asked about inside a cover set of up to 8 known nodes in random order,
// and every answer is checked the same way (a decoy caught equivocating is
// banned too). All witnesses and subjects are asked in parallel, so a slow
// witness costs at most 3 s. It returns how many witnesses had a valid copy
// of p; it needs a fresh advert of p in the cache (else ErrNoAdvert). Call
// it before trusting a node with money (voucher purchases).
func (s *Service) CrossCheck(ctx context.Context, p peer.ID, witnesses []peer.ID) (int, error) {
	if _, err := s.running(); err != nil {
		return 0, err
	}
	now := s.cfg.Now()
	s.mu.Lock()
	st := s.peers[p]
	if st == nil || st.ad == nil || !st.ad.Fresh(now) {
		s.mu.Unlock()
		return 0, fmt.Errorf("cross-check: %w", ErrNoAdvert)
	}
	var all []peer.ID
	for id, w := range s.peers {
		if id != p && w.ad != nil && w.ad.Fresh(now) {
			all = append(all, id)
		}
	}
	s.rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	if witnesses == nil {
		witnesses = all[:min(len(all), defaultWitnesses)]
	}
	subjects := []peer.ID{p}
	for _, id := range all {
		if len(subjects) >= crossCheckCover {
			break
		}
		if !slices.Contains(witnesses, id) {
			subjects = append(subjects, id)
		}
	}
	s.rng.Shuffle(len(subjects), func(i, j int) { subjects[i], subjects[j] = subjects[j], subjects[i] })
	s.mu.Unlock()

	type answer struct {
		witness, subject peer.ID
		env              []byte
	}
	var asks int
	answers := make(chan answer, len(witnesses)*len(subjects))
	for _, w := range witnesses {
		if w == s.h.ID() {
			continue
		}
		for _, sub := range subjects {
			if sub == w {
				continue
			}
			asks++
			go func(w, sub peer.ID) {
				rctx, cancel := context.WithTimeout(ctx, crossCheckTimeout)
				defer cancel()
				env, _, err := s.request(rctx, peer.AddrInfo{ID: w}, sub)
				if err != nil {
					env = nil
				}
				answers <- answer{w, sub, env}
			}(w, sub)
		}
	}
	had := 0
	var equivocated bool
	for range asks {
		a := <-answers
		if a.env == nil {
			continue
		}
		theirs, err := OpenAdvert(a.env, s.cfg.Now())
		if err != nil || theirs.Peer != a.subject {
			s.log.Debug("cross-check witness sent a bad copy", "witness", a.witness, "err", err)
			continue
		}
		if a.subject == p {
			had++
		}
		if s.compareCopy(a.subject, &theirs, a.env) && a.subject == p {
			equivocated = true
		}
	}
	if equivocated {
		return had, fmt.Errorf("cross-check %s: %w", p, ErrEquivocation)
	}
	return had, nil
}

// compareCopy checks a witness's verified copy of subject's advert against
// ours: another signed body under our seq bans subject (it reports true); a
// newer seq replaces ours; a re-encoded envelope of the same body proves
// nothing.
func (s *Service) compareCopy(subject peer.ID, theirs *Advert, env []byte) bool {
	s.mu.Lock()
	st := s.peers[subject]
	if st == nil || st.rec.Env == nil {
		banned := st != nil && s.cfg.Now().Before(st.rec.BannedUntil)
		s.mu.Unlock()
		return banned
	}
	ours, seq := st.rec.Env, st.rec.MaxSeq
	if theirs.Seq == seq {
		same, err := sameBody(env, ours)
		if err == nil && !same {
			s.banLocked(subject, st, env)
			s.mu.Unlock()
			s.log.Debug("node equivocates", "peer", subject, "seq", seq)
			return true
		}
		s.mu.Unlock()
		return false
	}
	s.mu.Unlock()
	if theirs.Seq > seq {
		if _, err := s.accept(env, "", nil); err != nil {
			s.log.Debug("cross-check newer copy refused", "peer", subject, "err", err)
		}
	}
	return false
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
