package discovery

import (
	"context"
	"errors"

	"github.com/libp2p/go-libp2p/core/peer"
	"time"
)

// snapshotLocked returns candidates for every peer with a fresh advert.
func (s *Service) snapshotLocked(now time.Time) []*candidate {
	out := make([]*candidate, 0, len(s.peers))
	for _, st := range s.peers {
		if st.ad == nil || !st.ad.Fresh(now) {
			continue
		}
		c := newCandidate(st.ad, st.observed, s.cfg.AllowPrivate)
		c.firstSeen = st.rec.FirstSeen
		c.ok, c.fail, c.lastFail = st.rec.OK, st.rec.Fail, st.rec.LastFail
		out = append(out, c)
	}
	return out
}

func (s *Service) rules(now time.Time) *selectRules {
	ramp := s.cfg.AgeRamp
	if ramp < 0 {
		ramp = 0
	}
	return &selectRules{
		now:              now,
		allowSameNetwork: s.cfg.AllowSameNetwork,
		failBackoff:      s.cfg.FailBackoff,
		ageRamp:          ramp,
	}
}

// SelectPath returns a path for req: an entry guard first, then middle
// relays, then a hop playing req.Final. Every hop has a fresh verified
// advert, charges at most req.MaxPriceSat for its role, has not failed in
// the last FailBackoff, and (unless AllowSameNetwork) shares no IPv4 /16,
// IPv6 /32 or declared family with another hop. Hops are weighted by age,
// observed success, capped capacity and price (see select.go). If the cache
// has too few candidates it runs Find first. The guard list is kept and
// persisted here. It returns ErrNoPath when no path fits.
func (s *Service) SelectPath(ctx context.Context, req PathRequest) ([]Advert, error) {
	if err := req.normalize(); err != nil {
		return nil, err
	}
	relays, finals := s.countUsable(req)
	if _, err := s.running(); err == nil {
		if relays < 2*req.Hops+s.cfg.Guards && s.findDue("relay") {
			_, _ = s.Find(ctx, RoleRelay, 0)
		}
		if finals < 1 {
			if req.Final == RoleExit {
				if s.findDue("exit/" + portClass(req.Port)) {
					_, _ = s.FindExits(ctx, req.Port, 0)
				}
			} else if req.Final != RoleRelay && s.findDue(string(req.Final)) {
				_, _ = s.Find(ctx, req.Final, 0)
			}
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	r := s.rules(now)
	pool := s.snapshotLocked(now)
	guards := s.maintainGuardsLocked(pool, PathRequest{}, r)
	path, err := pickPath(s.rng, pool, guards, req, r)
	if errors.Is(err, ErrNoPath) && req.Hops > 1 && len(s.guards) < 2*s.cfg.Guards {
		// None of our guards fits this request (price, exclusions, conflict
		// with the exit): add one that does, within the list bound.
		s.addGuardsLocked(pool, guards, len(guards)+1, req, r)
		guards = s.guardCandidatesLocked(pool)
		path, err = pickPath(s.rng, pool, guards, req, r)
	}
	if err != nil {
		return nil, err
	}
	out := make([]Advert, len(path))
	for i, c := range path {
		out[i] = c.ad.Clone()
	}
	return out, nil
}

// findDue reports whether SelectPath may run its own Find for what (a role
// or exit port class) now, at most once per refindInterval, so a small
// network does not turn every path selection into a DHT query.
func (s *Service) findDue(what string) bool {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.lastFind[what]; ok && now.Sub(last) < refindInterval {
		return false
	}
	s.lastFind[what] = now // few keys: roles and port classes
	return true
}

// countUsable counts cached relays and final-role nodes usable for req.
func (s *Service) countUsable(req PathRequest) (relays, finals int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	r := s.rules(now)
	for _, c := range s.snapshotLocked(now) {
		if c.usable(RoleRelay, &req, r) {
			relays++
		}
		if c.usable(req.Final, &req, r) {
			finals++
		}
	}
	return relays, finals
}

// guardCandidatesLocked returns the guards, in list order, that have a fresh
// advert in pool.
func (s *Service) guardCandidatesLocked(pool []*candidate) []*candidate {
	var out []*candidate
	for _, g := range s.guards {
		for _, c := range pool {
			if c.ad.Peer == g.Peer {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// maintainGuardsLocked drops guards past their lifetime or unlisted for too
// long, refreshes LastListed, tops the list up to cfg.Guards usable guards,
// persists it if it changed, and returns the guard candidates in order.
func (s *Service) maintainGuardsLocked(pool []*candidate, req PathRequest, r *selectRules) []*candidate {
	changed := false
	listed := map[string]bool{}
	for _, c := range pool {
		if c.ad.HasRole(RoleRelay) {
			listed[string(c.ad.Peer)] = true
		}
	}
	kept := s.guards[:0:0]
	for _, g := range s.guards {
		if listed[string(g.Peer)] {
			if r.now.Sub(g.LastListed) > time.Minute {
				g.LastListed = r.now
				changed = true
			}
		}
		if r.now.Sub(g.Added) > DefaultGuardLifetime || r.now.Sub(g.LastListed) > DefaultGuardUnlisted {
			changed = true
			continue
		}
		kept = append(kept, g)
	}
	s.guards = kept
	guards := s.guardCandidatesLocked(pool)
	if s.addGuardsLocked(pool, guards, s.cfg.Guards, req, r) {
		changed = true
		guards = s.guardCandidatesLocked(pool)
	} else if changed {
		s.persistGuardsLocked()
	}
	return guards
}

// addGuardsLocked tops the guard list up to want usable guards for req,
// within 2*cfg.Guards entries, and persists it. It reports whether any
// guard was added.
func (s *Service) addGuardsLocked(pool, guards []*candidate, want int, req PathRequest, r *selectRules) bool {
	room := 2*s.cfg.Guards - len(s.guards)
	if room <= 0 {
		return false
	}
	added := pickGuards(s.rng, pool, guards, want, req, r)
	if len(added) > room {
		added = added[:room]
	}
	for _, c := range added {
		s.guards = append(s.guards, guardEntry{Peer: c.ad.Peer, Added: r.now, LastListed: r.now})
	}
	if len(added) > 0 {
		s.persistGuardsLocked()
	}
	return len(added) > 0
}

func (s *Service) persistGuardsLocked() {
	if err := s.cache.putGuards(s.guards); err != nil {
		s.log.Warn("discovery cache write failed", "err", err)
	}
}

// Guards returns the current entry guards in preference order.
func (s *Service) Guards() []GuardStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]GuardStatus, len(s.guards))
	for i, g := range s.guards {
		out[i] = GuardStatus{Peer: g.Peer, Added: g.Added, LastListed: g.LastListed}
	}
	return out
}

// GuardStatus describes one entry guard.
type GuardStatus struct {
	Peer peer.ID
	// Added is when it became a guard; LastListed when it last had a
	// fresh relay advert.
	Added, LastListed time.Time
}
