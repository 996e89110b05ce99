package discovery

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"time"
)

// snapshotLocked returns candidates for every peer with a fresh advert.
func (s *Service) snapshotLocked(now time.Time) []*candidate {
	out := make([]*candidate, 0, len(s.peers))
	stakes := s.stakesLocked(now)
	for id, st := range s.peers {
		if st.ad == nil || !st.ad.Fresh(now) {
			continue
		}
		c := newCandidate(st.ad, st.observed, s.cfg.AllowPrivate)
		c.firstSeen = st.rec.FirstSeen
		c.ok, c.fail, c.lastFail = st.rec.OK, st.rec.Fail, st.rec.LastFail
		c.lnNode, c.stakeSat = stakes[id].node, stakes[id].eff
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
		unstakedShare:    UnstakedMaxShare,
		stakedEnds:       true,
		minStake:         MinStakeSat,
		quorum:           StakedQuorum,
		familyCap:        FamilyMaxShare,
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
	if _, err := s.running(); err == nil && (relays < 2*req.Hops+s.cfg.Guards || finals < 1) {
		s.refreshView(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	r := s.rules(now)
	pool := s.snapshotLocked(now)
	guards := s.maintainGuardsLocked(pool, PathRequest{}, r)
	path, err := pickPath(s.rng, pool, guards, req, r)
	if errors.Is(err, ErrNoPath) && req.Hops > 1 {
		// None of our guards fits this request (price, exclusions): sample
		// one that does, within the sampled-set bound.
		if s.addGuardsLocked(pool, len(s.usableGuardsLocked(pool, &req, r))+1, req, r) {
			s.persistGuardsLocked()
		}
		guards = s.usableGuardsLocked(pool, &req, r)
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

// viewRoles are the role keys refreshView asks the DHT for.
var viewRoles = [...]Role{RoleRelay, RoleExit, RoleMempool, RoleRendezvous, RoleTorGateway}

// refreshView runs the same lookups whatever the request that needed them:
// every role key, never an exit port class, in parallel, each at most once
// per refindInterval. DHT servers thus learn that a client refreshed its
// view, not which kind of hop or which exit port it is about to use (exit
// port filtering happens locally, on the adverts).
func (s *Service) refreshView(ctx context.Context) {
	s.lookupView(ctx, true)
}

// lookupView looks up every role key in parallel; with due, only those not
// looked up in the last refindInterval.
func (s *Service) lookupView(ctx context.Context, due bool) {
	var wg sync.WaitGroup
	for _, r := range viewRoles {
		if due && !s.findDue(string(r)) {
			continue
		}
		wg.Add(1)
		go func(r Role) {
			defer wg.Done()
			_, _ = s.Find(ctx, r, 0)
		}(r)
	}
	wg.Wait()
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

// maintainGuardsLocked keeps the sampled guard set (Tor's guard-spec, in
// small): entries past their randomised lifetime or unlisted for
// DefaultGuardUnlisted leave; LastListed is refreshed; while fewer than
// cfg.Guards sampled guards are usable, one more relay is sampled by weight
// (within maxSampledGuards entries; when the set is full, the entry unlisted
// longest makes room). It persists changes and returns the usable guards in
// sample order: the first cfg.Guards are the primary guards, the rest are
// the fail-over order.
func (s *Service) maintainGuardsLocked(pool []*candidate, req PathRequest, r *selectRules) []*candidate {
	changed := false
	listed := map[peer.ID]bool{}
	for _, c := range pool {
		if c.ad.HasRole(RoleRelay) {
			listed[c.ad.Peer] = true
		}
	}
	kept := s.guards[:0:0]
	for _, g := range s.guards {
		if listed[g.Peer] && r.now.Sub(g.LastListed) > time.Minute {
			g.LastListed = r.now
			changed = true
		}
		life := g.Lifetime
		if life <= 0 {
			life = DefaultGuardLifetime
		}
		if r.now.Sub(g.Added) > life || r.now.Sub(g.LastListed) > DefaultGuardUnlisted {
			changed = true
			continue
		}
		kept = append(kept, g)
	}
	s.guards = kept
	if s.addGuardsLocked(pool, s.cfg.Guards, req, r) {
		changed = true
	}
	if changed {
		s.persistGuardsLocked()
	}
	return s.usableGuardsLocked(pool, &req, r)
}

// usableGuardsLocked returns the sampled guards, in order, that are usable
// as a relay for req now.
func (s *Service) usableGuardsLocked(pool []*candidate, req *PathRequest, r *selectRules) []*candidate {
	var out []*candidate
	for _, c := range s.guardCandidatesLocked(pool) {
		if c.usable(RoleRelay, req, r) {
			out = append(out, c)
		}
	}
	return out
}

// addGuardsLocked samples relays into the guard set until want of them are
// usable for req, making room in a full set by dropping the entry unlisted
// longest that is not usable now. It reports whether it changed the set;
// the caller persists.
func (s *Service) addGuardsLocked(pool []*candidate, want int, req PathRequest, r *selectRules) bool {
	changed := false
	for tries := 0; tries < maxSampledGuards; tries++ {
		have := s.usableGuardsLocked(pool, &req, r)
		if len(have) >= want {
			break
		}
		if len(s.guards) >= maxSampledGuards && !s.dropStaleGuardLocked(have) {
			break
		}
		var sampled []peer.ID
		for _, g := range s.guards {
			sampled = append(sampled, g.Peer)
		}
		sreq := req
		sreq.Exclude = append(slices.Clone(req.Exclude), sampled...)
		added := pickGuards(s.rng, pool, have, len(have)+1, sreq, r)
		if len(added) == 0 {
			break
		}
		life := guardLifetimeMin + time.Duration(s.rng.Int64N(int64(guardLifetimeMax-guardLifetimeMin)))
		s.guards = append(s.guards, guardEntry{Peer: added[0].ad.Peer, Added: r.now, LastListed: r.now, Lifetime: life})
		changed = true
	}
	return changed
}

// dropStaleGuardLocked removes the sampled guard, not in usable, that was
// listed least recently. It reports whether one was removed.
func (s *Service) dropStaleGuardLocked(usable []*candidate) bool {
	victim := -1
	for i, g := range s.guards {
		if slices.ContainsFunc(usable, func(c *candidate) bool { return c.ad.Peer == g.Peer }) {
			continue
		}
		if victim < 0 || g.LastListed.Before(s.guards[victim].LastListed) {
			victim = i
		}
	}
	if victim < 0 {
		return false
	}
	s.guards = slices.Delete(s.guards, victim, victim+1)
	return true
}

// refreshGuards fetches again the adverts of sampled guards whose advert is
// missing or expires within guardRefreshAhead, so guards stay usable on
// their own schedule, not only when a Find happens to reach them. Guards
// that do not answer are marked failing as usual.
func (s *Service) refreshGuards(ctx context.Context) {
	now := s.cfg.Now()
	s.mu.Lock()
	var todo []peer.ID
	for _, g := range s.guards {
		st := s.peers[g.Peer]
		if st == nil || st.ad == nil || st.ad.Expiry.Sub(now) < guardRefreshAhead {
			todo = append(todo, g.Peer)
		}
	}
	fetch := s.fetchAdvert
	s.mu.Unlock()
	for _, p := range todo {
		if ctx.Err() != nil {
			return
		}
		if _, err := fetch(ctx, s.h.Peerstore().PeerInfo(p)); err != nil {
			s.log.Debug("guard advert refresh failed", "peer", p, "err", err)
			s.markBad(p)
		}
	}
}

// viewLoop looks up every role key every Config.ViewRefresh (at a random
// point of each interval, so lookups do not line up with anything the
// node does). Owned by the Service; stops with s.ctx.
func (s *Service) viewLoop() {
	defer s.wg.Done()
	for {
		s.mu.Lock()
		d := s.cfg.ViewRefresh/2 + time.Duration(s.rng.Int64N(int64(s.cfg.ViewRefresh)))
		s.mu.Unlock()
		t := time.NewTimer(d)
		select {
		case <-s.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		now := s.cfg.Now()
		s.mu.Lock()
		for _, r := range viewRoles {
			s.lastFind[string(r)] = now
		}
		s.mu.Unlock()
		s.lookupView(s.ctx, false)
	}
}

// guardLoop refreshes guard adverts every guardRefreshInterval. Owned by
// the Service; stops with s.ctx.
func (s *Service) guardLoop() {
	defer s.wg.Done()
	t := time.NewTicker(guardRefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.refreshGuards(s.ctx)
	}
}

func (s *Service) persistGuardsLocked() {
	if err := s.cache.putGuards(s.guards); err != nil {
		s.log.Warn("discovery cache write failed", "err", err)
	}
}

// Guards returns the sampled guard set in preference order; the first
// usable Config.Guards of them are the primary guards.
func (s *Service) Guards() []GuardStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]GuardStatus, len(s.guards))
	for i, g := range s.guards {
		out[i] = GuardStatus{Peer: g.Peer, Added: g.Added, LastListed: g.LastListed, Lifetime: g.Lifetime}
	}
	return out
}

// GuardStatus describes one entry guard.
type GuardStatus struct {
	Peer peer.ID
	// Added is when it became a guard; LastListed when it last had a
	// fresh relay advert.
	Added, LastListed time.Time
	// Lifetime is how long after Added it is rotated out (randomised).
	Lifetime time.Duration
}
