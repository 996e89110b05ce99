package discovery

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// peerState is what the Service knows of one peer.
type peerState struct {
	rec peerRecord
	// ad is the verified advert from rec.Env, nil if none or unusable.
	ad *Advert
	// observed is rec.Observed parsed, nil if none.
	observed ma.Multiaddr
}

// ownAdvert is the advert this node publishes.
type ownAdvert struct {
	tmpl       Advert // as given to Publish
	autoSeq    bool
	autoExpiry bool
	signed     Advert
	env        []byte
}

// Service publishes this node's advert and finds and selects other nodes.
// All methods are safe for concurrent use.
type Service struct {
	h    host.Host
	priv crypto.PrivKey
	cfg  Config
	log  *slog.Logger

	// life guards the lifecycle fields below it; held across Start/Close.
	life    sync.Mutex
	started bool
	closed  bool
	dht     *dht.IpfsDHT
	store   *boundedStore
	ctx     context.Context    // cancelled by Close; parent of background work
	cancel  context.CancelFunc // cancels ctx
	wg      sync.WaitGroup     // background goroutines (republisher)

	// mu guards everything below it. Never held across network I/O.
	mu           sync.Mutex
	peers        map[peer.ID]*peerState // bounded by cfg.MaxKnown
	guards       []guardEntry           // the sampled guard set, bounded by maxSampledGuards
	bad          map[peer.ID]time.Time  // negative cache, bounded by maxBadPeers
	own          *ownAdvert
	lastFind     map[string]time.Time // SelectPath's own Finds; keys are roles and port classes only
	dirty        map[peer.ID]bool     // peers to write (or delete) at the next flush; ⊆ peers ∪ evicted
	ownSeq       uint64
	since        time.Time // earliest FirstSeen ever recorded (zero: none); persisted, never moved by eviction
	republishing bool
	rng          *rand.Rand
	cache        *cache
	// ownStake is our latest stake proof, for ownStakePayee.
	ownStake      StakeProof
	ownStakePayee string

	// fetchAdvert fetches and accepts a peer's advert (s.fetch; tests
	// replace it to simulate a week of relays coming and going).
	fetchAdvert func(context.Context, peer.AddrInfo) (Advert, error)

	// stakeKick wakes the stake loop (buffered 1; never closed).
	stakeKick chan struct{}

	// censor is the content-censorship check of provider keys (censor.go).
	censor censorGuard
}

// New returns a Service for host h, whose identity key is priv. It opens and
// loads the disk cache (if cfg.CacheDir is set) but starts nothing on the
// network; call Start. Close releases the cache even if Start was not called.
func New(h host.Host, priv crypto.PrivKey, cfg Config) (*Service, error) {
	if h == nil {
		return nil, fmt.Errorf("%w: nil host", ErrBadConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if priv != nil {
		id, err := peer.IDFromPrivateKey(priv)
		if err != nil || id != h.ID() {
			return nil, fmt.Errorf("%w: private key is not the host's", ErrBadConfig)
		}
	}
	cfg = cfg.withDefaults()
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("discovery: seed: %w", err)
	}
	c, err := openCache(cfg.CacheDir)
	if err != nil {
		return nil, err
	}
	s := &Service{
		h:         h,
		priv:      priv,
		cfg:       cfg,
		log:       cfg.Logger.With("subsys", "discovery"),
		peers:     map[peer.ID]*peerState{},
		bad:       map[peer.ID]time.Time{},
		lastFind:  map[string]time.Time{},
		dirty:     map[peer.ID]bool{},
		rng:       rand.New(rand.NewChaCha8(seed)),
		cache:     c,
		stakeKick: make(chan struct{}, 1),
	}
	s.fetchAdvert = s.fetch
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.load(); err != nil {
		c.close()
		return nil, err
	}
	if c != nil {
		s.wg.Add(1)
		go s.flushLoop()
	}
	return s, nil
}

// flushLoop writes dirty peer records to the cache every flushInterval and
// once more when Close cancels s.ctx, so Report and accept never wait for
// the disk while holding s.mu. Owned by the Service.
func (s *Service) flushLoop() {
	defer s.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			s.flush()
			return
		case <-t.C:
			s.flush()
		}
	}
}

// flush writes the dirty records in one transaction.
func (s *Service) flush() {
	s.mu.Lock()
	if len(s.dirty) == 0 {
		s.mu.Unlock()
		return
	}
	batch := make(map[peer.ID]*peerRecord, len(s.dirty))
	for id := range s.dirty {
		if st := s.peers[id]; st != nil {
			r := st.rec
			batch[id] = &r
		} else {
			batch[id] = nil
		}
	}
	clear(s.dirty)
	c := s.cache
	s.mu.Unlock()
	if err := c.writePeers(batch); err != nil {
		s.log.Warn("discovery cache write failed", "err", err)
	}
}

// load fills peers and guards from the cache, re-verifying every advert.
func (s *Service) load() error {
	recs, err := s.cache.loadPeers()
	if err != nil {
		return fmt.Errorf("discovery cache: %w", err)
	}
	now := s.cfg.Now()
	for id, r := range recs {
		if id == s.h.ID() {
			continue
		}
		st := &peerState{rec: *r}
		if len(r.Env) > 0 {
			ad, err := openUnchecked(r.Env)
			if err == nil && ad.Peer == id && ad.Fresh(now) {
				st.ad = &ad
			} else {
				st.rec.Env = nil
			}
		}
		if len(r.Observed) > 0 {
			if m, err := ma.NewMultiaddrBytes(r.Observed); err == nil {
				st.observed = m
			}
		}
		s.peers[id] = st
	}
	s.since = s.cache.loadSince()
	stored := s.since
	for _, st := range s.peers {
		if t := st.rec.FirstSeen; !t.IsZero() && (s.since.IsZero() || t.Before(s.since)) {
			s.since = t
		}
	}
	if !s.since.Equal(stored) {
		if err := s.cache.putSince(s.since); err != nil {
			return fmt.Errorf("discovery cache: %w", err)
		}
	}
	for len(s.peers) > s.cfg.MaxKnown {
		s.evictLocked()
	}
	g, err := s.cache.loadGuards()
	if err != nil {
		s.log.Debug("guard list unreadable, starting afresh", "err", err)
		g = nil
	}
	if len(g) > maxSampledGuards {
		g = g[:maxSampledGuards]
	}
	s.guards = g
	s.ownSeq = s.cache.loadOwnSeq()
	return nil
}

// Start brings up the DHT (server mode if Config.DHTServer), registers the
// advert protocol handler, connects to the bootstrap peers and refreshes the
// routing table. Unreachable bootstrap peers are logged, not fatal (the DHT
// retries them). It fails if the DHT cannot be built or ctx ends. Calling it
// again is a no-op; after Close it returns ErrClosed.
func (s *Service) Start(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started {
		return nil
	}
	s.store = newBoundedStore(s.cfg.MaxDHTRecords)
	opts, boot := dhtOptions(&s.cfg, s.store)
	d, err := dht.New(s.h, opts...)
	if err != nil {
		return fmt.Errorf("discovery: start dht: %w", err)
	}
	s.dht = d
	if s.cfg.DHTServer {
		// A pure client (DHT client mode) answers no discovery query: no
		// advert protocol, so it neither announces a co-infuse protocol in
		// identify nor tells anyone which adverts it holds.
		s.h.SetStreamHandler(ProtocolAdvert, s.handleAdvert)
	}
	s.started = true
	s.wg.Add(1)
	go s.guardLoop()
	if s.cfg.ViewRefresh > 0 {
		s.wg.Add(1)
		go s.viewLoop()
	}
	if s.cfg.VerifyStake != nil && s.cfg.NodeChannels != nil {
		s.wg.Add(1)
		go s.stakeLoop()
		s.kickStake()
	}

	var ok int
	var lastErr error
	for _, b := range boot {
		if b.ID == s.h.ID() {
			continue
		}
		if err := s.h.Connect(ctx, b); err != nil {
			lastErr = err
			s.log.Debug("bootstrap peer unreachable", "peer", b.ID, "err", err)
			continue
		}
		ok++
	}
	if len(boot) > 0 && ok == 0 && lastErr != nil {
		// Not fatal: the DHT retries its bootstrap peers every two minutes
		// while its routing table is empty.
		s.log.Warn("no bootstrap peer reachable yet; the DHT keeps retrying", "peers", len(boot), "err", lastErr)
	}
	if ok > 0 {
		// Connected peers enter the routing table once identify confirms
		// they speak the DHT protocol; wait for that, then refresh.
		if err := waitRoutingTable(ctx, d); err != nil {
			return fmt.Errorf("discovery: bootstrap: %w", err)
		}
		select {
		case <-d.RefreshRoutingTable():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// waitRoutingTable waits until d has a peer in its routing table, ctx ends,
// or bootstrapWait passes (then it returns nil: the DHT keeps trying).
func waitRoutingTable(ctx context.Context, d *dht.IpfsDHT) error {
	if d.RoutingTable().Size() > 0 {
		return nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	limit := time.NewTimer(bootstrapWait)
	defer limit.Stop()
	for d.RoutingTable().Size() == 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-limit.C:
			return nil
		case <-t.C:
		}
	}
	return nil
}

// dhtOptions returns the DHT options and bootstrap list for cfg: private
// mode uses the /co-infuse prefix with values off; ipfs mode keeps the Amino
// defaults and, when cfg.Bootstrap is nil, the public bootstrap peers.
func dhtOptions(cfg *Config, store *boundedStore) ([]dht.Option, []peer.AddrInfo) {
	boot := cfg.Bootstrap
	opts := []dht.Option{dht.Datastore(store)}
	switch cfg.Mode {
	case ModeIPFS:
		if boot == nil {
			boot = dht.GetDefaultBootstrapPeerAddrInfos() // = AminoBootstrap
		}
	default:
		opts = append(opts, dht.ProtocolPrefix(ProtocolPrefix), dht.DisableValues())
	}
	opts = append(opts, dht.BootstrapPeers(boot...))
	if cfg.DHTServer {
		opts = append(opts, dht.Mode(dht.ModeServer))
	} else {
		opts = append(opts, dht.Mode(dht.ModeClient))
	}
	if cfg.DisableAutoRefresh {
		opts = append(opts, dht.DisableAutoRefresh())
	}
	return opts, boot
}

// Close stops republishing, the DHT and the advert handler, and closes the
// cache. Published provider records stay in the DHT until they expire; the
// advert protocol stops answering at once. Safe to call twice.
func (s *Service) Close() error {
	s.life.Lock()
	if s.closed {
		s.life.Unlock()
		return nil
	}
	s.closed = true
	started := s.started
	s.cancel()
	// life is released before waiting: a background goroutine (viewLoop's
	// lookups) may be in running() on its way out, and would wait for it
	// for ever. closed is set, so nothing starts again.
	s.life.Unlock()
	s.wg.Wait()
	var errs []error
	if started {
		if s.cfg.DHTServer {
			s.h.RemoveStreamHandler(ProtocolAdvert)
		}
		errs = append(errs, s.dht.Close())
	}
	s.mu.Lock()
	errs = append(errs, s.cache.close())
	s.cache = nil
	s.mu.Unlock()
	return errors.Join(errs...)
}

// running returns the DHT if the service is started and not closed.
func (s *Service) running() (*dht.IpfsDHT, error) {
	s.life.Lock()
	defer s.life.Unlock()
	switch {
	case s.closed:
		return nil, ErrClosed
	case !s.started:
		return nil, ErrNotStarted
	}
	return s.dht, nil
}

// accept verifies a signed advert received from peer from (empty: from the
// cache or a test) and records it. It enforces key binding, freshness and
// the sequence rule, and the MaxKnown bound.
func (s *Service) accept(env []byte, from peer.ID, observed ma.Multiaddr) (Advert, error) {
	now := s.cfg.Now()
	ad, err := OpenAdvert(env, now)
	if err != nil {
		return Advert{}, err
	}
	if from != "" && ad.Peer != from {
		return Advert{}, fmt.Errorf("open advert: served by another peer: %w", ErrKeyMismatch)
	}
	if ad.Peer == s.h.ID() {
		return Advert{}, fmt.Errorf("open advert: our own peer id: %w", ErrKeyMismatch)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.peers[ad.Peer]
	if st != nil {
		if now.Before(st.rec.BannedUntil) {
			return Advert{}, fmt.Errorf("open advert: banned until %s: %w", st.rec.BannedUntil.Format(time.RFC3339), ErrEquivocation)
		}
		if ad.Seq < st.rec.MaxSeq {
			return Advert{}, fmt.Errorf("open advert: seq %d < %d: %w", ad.Seq, st.rec.MaxSeq, ErrReplay)
		}
		if ad.Seq == st.rec.MaxSeq && st.rec.Env != nil {
			same, err := sameBody(env, st.rec.Env)
			if err != nil {
				return Advert{}, err
			}
			if !same {
				// Two validly signed, different bodies with one seq: the
				// node equivocates. Keep both as the proof.
				s.banLocked(ad.Peer, st, env)
				return Advert{}, fmt.Errorf("open advert: seq %d signed twice: %w", ad.Seq, ErrEquivocation)
			}
			// The same signed body, perhaps in another envelope: keep ours.
			if st.ad != nil {
				st.rec.LastSeen = now
				return st.ad.Clone(), nil
			}
		}
	} else {
		for len(s.peers) >= s.cfg.MaxKnown {
			s.evictLocked()
		}
		st = &peerState{rec: peerRecord{FirstSeen: now}}
		s.peers[ad.Peer] = st
		if s.since.IsZero() {
			s.since = now
			if err := s.cache.putSince(now); err != nil {
				s.log.Warn("discovery cache write failed", "err", err)
			}
		}
	}
	st.rec.Env = bytes.Clone(env)
	st.rec.MaxSeq = ad.Seq
	st.rec.LastSeen = now
	if observed != nil {
		st.observed = observed
		st.rec.Observed = observed.Bytes()
	}
	st.ad = &ad
	delete(s.bad, ad.Peer)
	s.dirty[ad.Peer] = true
	if needsStakeCheck(st, now) {
		s.kickStake()
	}
	return ad.Clone(), nil
}

// kickStake wakes the stake loop without blocking.
func (s *Service) kickStake() {
	select {
	case s.stakeKick <- struct{}{}:
	default:
	}
}

// evictLocked removes one peer to make room: a non-guard without a fresh
// advert if any, else the non-guard seen least recently.
func (s *Service) evictLocked() {
	now := s.cfg.Now()
	var victim peer.ID
	var vScore time.Time
	first := true
	for id, st := range s.peers {
		if s.isGuardLocked(id) || now.Before(st.rec.BannedUntil) {
			continue // guards and bans (with their proof) go last
		}
		score := st.rec.LastSeen
		if st.ad == nil || !st.ad.Fresh(now) {
			score = time.Time{} // evict first
		}
		if first || score.Before(vScore) {
			victim, vScore, first = id, score, false
		}
	}
	if first { // only guards left; drop any
		for id := range s.peers {
			victim = id
			break
		}
	}
	delete(s.peers, victim)
	s.dirty[victim] = true // absent from peers: deleted at the next flush
}

func (s *Service) isGuardLocked(id peer.ID) bool {
	for _, g := range s.guards {
		if g.Peer == id {
			return true
		}
	}
	return false
}

// markBad keeps p out of fetches for FailBackoff after a failed fetch.
func (s *Service) markBad(p peer.ID) { s.markBadFor(p, s.cfg.FailBackoff) }

// markBadFor keeps p out of fetches for d.
func (s *Service) markBadFor(p peer.ID, d time.Duration) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) >= maxBadPeers {
		for id, until := range s.bad {
			if now.After(until) {
				delete(s.bad, id)
			}
		}
		for id := range s.bad {
			if len(s.bad) < maxBadPeers {
				break
			}
			delete(s.bad, id)
		}
	}
	s.bad[p] = now.Add(d)
}

// isBad reports whether p failed recently or is banned for equivocating.
func (s *Service) isBad(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	if st := s.peers[p]; st != nil && now.Before(st.rec.BannedUntil) {
		return true
	}
	until, ok := s.bad[p]
	return ok && now.Before(until)
}

// Report records the outcome of using p (a circuit hop that worked or
// failed). A failure keeps p out of new paths for FailBackoff and lowers its
// weight; successes raise it. Unknown peers are ignored (bounded memory).
func (s *Service) Report(p peer.ID, ok bool) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.peers[p]
	if st == nil {
		return
	}
	if ok {
		st.rec.OK++
		st.rec.LastOK = now
	} else {
		st.rec.Fail++
		st.rec.LastFail = now
	}
	s.dirty[p] = true
}

// PeerStatus is what Known reports of one peer (for `co-infuse peers`).
type PeerStatus struct {
	Peer peer.ID
	// Roles and Prices (sat/MB) of the current advert; nil if it expired.
	Roles  []Role
	Prices map[Role]uint64
	// Seq and Expiry of the current advert (zero if none).
	Seq    uint64
	Expiry time.Time
	// FirstSeen is when this client first verified an advert of the peer;
	// LastSeen when it last did.
	FirstSeen, LastSeen time.Time
	// OK and Fail count Report outcomes.
	OK, Fail uint32
	// LastResult is "ok", "fail" or "" (never used); LastResultAt its time.
	LastResult   string
	LastResultAt time.Time
	// Guard tells whether the peer is one of our entry guards.
	Guard bool
	// Stake is this client's verdict on the peer's Lightning stake proof.
	Stake StakeStatus
	// Weight is the peer's selection weight as a relay now (stake, age,
	// success; before the per-network and per-Lightning-node splits and
	// the bound on all unstaked nodes' share, which depend on the pick).
	Weight float64
	// Share is the chance, in 0..1, that one pick of this client puts the
	// peer in each position now, with every position rule applied
	// (minimum stake, per-network and per-Lightning-node splits, the
	// staked quorum, the bound on unstaked nodes, staked ends, exit weight
	// saved for exits, the family cap) but no path conflicts. 0 where the peer cannot play the position.
	Share PositionShare
	// BannedUntil is set while the peer is banned for equivocating.
	BannedUntil time.Time `json:",omitzero"`
}

// PositionShare is a peer's chance of being picked for each position of
// an exit path (positionWeights).
type PositionShare struct {
	Guard, Middle, Exit float64
}

// positionSharesLocked returns, for every peer with a fresh advert, its
// PositionShare under the rules the Service selects with now. s.mu held.
func (s *Service) positionSharesLocked(now time.Time) map[peer.ID]PositionShare {
	pool := s.snapshotLocked(now)
	r := s.rules(now)
	out := make(map[peer.ID]PositionShare, len(pool))
	for _, pos := range []position{posGuard, posMiddle, posFinal} {
		req := &PathRequest{Final: RoleExit}
		var elig []*candidate
		for _, c := range pool {
			if c.usable(pos.role(req), req, r) {
				elig = append(elig, c)
			}
		}
		w := positionWeights(elig, pos, req, r)
		var sum float64
		for _, x := range w {
			sum += x
		}
		if sum <= 0 {
			continue
		}
		for i, c := range elig {
			ps := out[c.ad.Peer]
			switch pos {
			case posGuard:
				ps.Guard = w[i] / sum
			case posMiddle:
				ps.Middle = w[i] / sum
			case posFinal:
				ps.Exit = w[i] / sum
			}
			out[c.ad.Peer] = ps
		}
	}
	return out
}

// StakeStatus is what `peers` shows of a node's stake.
type StakeStatus struct {
	// Proof tells whether the current advert carries a stake proof.
	Proof bool
	// Node is the Lightning node the proof verified for, "" if none.
	Node string `json:",omitempty"`
	// CapacitySat and EffectiveSat are the node's public channel capacity
	// and its age-weighted stake (DISCOVERY.md §7), as counted now: half
	// of each channel with another staked node, 0 if the verdict is stale
	// or the proof expired.
	CapacitySat, EffectiveSat int64
	// Channels counts its public channels.
	Channels int
	// CheckedAt is when our LND last confirmed it.
	CheckedAt time.Time `json:",omitzero"`
	// Refused says why a proof was refused ("" if not).
	Refused string `json:",omitempty"`
}

// FirstSeen returns, for each of ids that the service has a record of,
// when it first verified an advert of that peer, and since: the earliest
// FirstSeen it ever recorded, where its picture of the network begins
// (now if it has none), and now by the service's clock. Records, their
// FirstSeen, and since are kept across restarts; since does not move when
// the oldest records are evicted (MaxKnown), so a flood of new adverts
// cannot make its own nodes look found while this node bootstrapped. The HSDir age
// gate (rendezvous.HSDirEligible) uses them.
func (s *Service) FirstSeen(ids []peer.ID) (first map[peer.ID]time.Time, since, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now = s.cfg.Now()
	since = now
	if !s.since.IsZero() && s.since.Before(now) {
		since = s.since
	}
	first = make(map[peer.ID]time.Time, len(ids))
	for _, id := range ids {
		if st := s.peers[id]; st != nil && !st.rec.FirstSeen.IsZero() {
			first[id] = st.rec.FirstSeen
		}
	}
	return first, since, now
}

// Known returns the status of every peer the service knows, by peer ID.
func (s *Service) Known() []PeerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	out := make([]PeerStatus, 0, len(s.peers))
	stakes := s.stakesLocked(now)
	shares := s.positionSharesLocked(now)
	for id, st := range s.peers {
		ps := PeerStatus{
			Peer: id, FirstSeen: st.rec.FirstSeen, LastSeen: st.rec.LastSeen,
			OK: st.rec.OK, Fail: st.rec.Fail, Guard: s.isGuardLocked(id),
			Share: shares[id],
		}
		if st.ad != nil {
			c := st.ad.Clone()
			ps.Roles, ps.Prices, ps.Seq, ps.Expiry = c.Roles, c.Prices, c.Seq, c.Expiry
			ps.Stake.Proof = !c.Stake.IsZero()
			cand := newCandidate(&c, st.observed, s.cfg.AllowPrivate)
			cand.firstSeen, cand.ok, cand.fail = st.rec.FirstSeen, st.rec.OK, st.rec.Fail
			cand.lnNode, cand.stakeSat = stakes[id].node, stakes[id].eff
			ps.Weight = cand.weight(RoleRelay, &PathRequest{}, s.rules(now))
			if cand.lnNode != "" {
				ps.Stake.Node, ps.Stake.EffectiveSat = cand.lnNode, cand.stakeSat
				ps.Stake.CapacitySat, ps.Stake.Channels = st.rec.Stake.CapacitySat, st.rec.Stake.Channels
			}
		}
		if sr := st.rec.Stake; sr != nil {
			ps.Stake.CheckedAt, ps.Stake.Refused = sr.CheckedAt, sr.Err
		}
		if now.Before(st.rec.BannedUntil) {
			ps.BannedUntil = st.rec.BannedUntil
		}
		switch {
		case st.rec.LastOK.IsZero() && st.rec.LastFail.IsZero():
		case st.rec.LastFail.After(st.rec.LastOK):
			ps.LastResult, ps.LastResultAt = "fail", st.rec.LastFail
		default:
			ps.LastResult, ps.LastResultAt = "ok", st.rec.LastOK
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(string(a.Peer), string(b.Peer)) })
	return out
}
