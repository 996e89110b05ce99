package discovery

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

const (
	// ProtocolAdvert fetches a node's signed advert (DISCOVERY.md §4).
	ProtocolAdvert protocol.ID = "/co-infuse/advert/1"
	// ProtocolPrefix is the DHT protocol prefix in private mode.
	ProtocolPrefix protocol.ID = "/co-infuse"
	// serviceName is the resource-manager service of advert streams.
	serviceName = "co-infuse.discovery"
)

// maxRequest bounds an advert request: 0x01 | peer_len(1) | peer_id.
const maxRequest = 2 + MaxPeerIDLen

// handleAdvert answers one advert request (DISCOVERY.md §4) with
// len(4) | envelope, len 0 when there is none. An empty request asks for
// our own advert; 0x01 | peer_len | peer_id asks for our cached copy of that
// peer's advert (for CrossCheck).
func (s *Service) handleAdvert(st network.Stream) {
	defer st.Close()
	if err := st.Scope().SetService(serviceName); err != nil {
		_ = st.Reset()
		return
	}
	_ = st.SetDeadline(time.Now().Add(s.cfg.FetchTimeout))
	req := make([]byte, maxRequest+1)
	n, err := io.ReadFull(st, req)
	if err == nil || (err != io.EOF && err != io.ErrUnexpectedEOF) {
		_ = st.Reset() // over-long request or a read error
		return
	}
	req = req[:n]
	var env []byte
	s.mu.Lock()
	switch {
	case len(req) == 0:
		if s.own != nil {
			env = s.own.env
		}
	case req[0] == 1 && len(req) >= 2 && int(req[1]) == len(req)-2:
		if st := s.peers[peer.ID(req[2:])]; st != nil && st.ad != nil && st.ad.Fresh(s.cfg.Now()) {
			env = st.rec.Env
		}
	default:
		s.mu.Unlock()
		_ = st.Reset()
		return
	}
	s.mu.Unlock()
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(env)))
	if _, err := st.Write(append(hdr[:], env...)); err != nil {
		s.log.Debug("advert request failed", "peer", st.Conn().RemotePeer(), "err", err)
		_ = st.Reset()
	}
}

// fetch gets and verifies the advert of ai.ID over ProtocolAdvert.
func (s *Service) fetch(ctx context.Context, ai peer.AddrInfo) (Advert, error) {
	env, observed, err := s.request(ctx, ai, "")
	if err != nil {
		return Advert{}, fmt.Errorf("fetch advert: %w", err)
	}
	return s.accept(env, ai.ID, observed)
}

// request asks ai for its own advert (about == "") or for its cached copy
// of about's, and returns the raw envelope and the address ai was reached
// on. The envelope is not verified.
func (s *Service) request(ctx context.Context, ai peer.AddrInfo, about peer.ID) ([]byte, ma.Multiaddr, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FetchTimeout)
	defer cancel()
	if len(ai.Addrs) > 0 {
		s.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	} else if len(s.h.Peerstore().Addrs(ai.ID)) == 0 && s.h.Network().Connectedness(ai.ID) != network.Connected {
		// A provider record may come without addresses (they expire
		// sooner than the record); ask the DHT for the peer.
		if d, err := s.running(); err == nil {
			if _, err := d.FindPeer(ctx, ai.ID); err != nil {
				return nil, nil, fmt.Errorf("find peer: %w", err)
			}
		}
	}
	st, err := s.h.NewStream(ctx, ai.ID, ProtocolAdvert)
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	_ = st.Scope().SetService(serviceName)
	_ = st.SetDeadline(time.Now().Add(s.cfg.FetchTimeout))
	if about != "" {
		if _, err := st.Write(append([]byte{1, byte(len(about))}, about...)); err != nil {
			_ = st.Reset()
			return nil, nil, err
		}
	}
	_ = st.CloseWrite()
	var hdr [4]byte
	if _, err := io.ReadFull(st, hdr[:]); err != nil {
		_ = st.Reset()
		return nil, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, nil, ErrNoAdvert
	}
	if n > MaxEnvelopeSize {
		_ = st.Reset()
		return nil, nil, fmt.Errorf("%w: %d bytes", ErrTooLarge, n)
	}
	// Account the buffer to the resource manager before allocating it.
	if err := st.Scope().ReserveMemory(int(n), network.ReservationPriorityLow); err != nil {
		_ = st.Reset()
		return nil, nil, fmt.Errorf("reserve memory: %w", err)
	}
	defer st.Scope().ReleaseMemory(int(n))
	env := make([]byte, n)
	if _, err := io.ReadFull(st, env); err != nil {
		_ = st.Reset()
		return nil, nil, err
	}
	return env, st.Conn().RemoteMultiaddr(), nil
}

// Publish signs ad with the host key, serves it over ProtocolAdvert and
// provides it in the DHT under the key of each role (and, for exits, each
// exit port class its policy touches). Zero fields are filled in: Peer (the
// host), Seq (above every earlier one, also across restarts: it is
// time-based and the last one is kept in the cache), Expiry (now +
// AdvertTTL, renewed on republish) and Addrs (the host's). Self and
// duplicates are dropped from Family, and Addrs beyond the caps are dropped.
// The advert is re-signed and re-provided every Republish until Close; a
// later Publish replaces it (e.g. with a new price). It returns an error if
// no DHT peer accepted a provider record for some key; the advert is served
// and republished even then.
func (s *Service) Publish(ctx context.Context, ad Advert) error {
	d, err := s.running()
	if err != nil {
		return err
	}
	if s.priv == nil {
		return fmt.Errorf("publish: %w: no private key", ErrBadConfig)
	}
	ad = ad.Clone()
	if ad.Peer == "" {
		ad.Peer = s.h.ID()
	}
	if ad.Peer != s.h.ID() {
		return fmt.Errorf("publish: %w", ErrKeyMismatch)
	}
	// Operators list their whole family, often including this node.
	var fam []peer.ID
	for _, f := range ad.Family {
		if f != ad.Peer && !slices.Contains(fam, f) && len(fam) < MaxFamily {
			fam = append(fam, f)
		}
	}
	ad.Family = fam
	s.refreshOwnStake(ctx, ad.Payee)
	s.mu.Lock()
	own := &ownAdvert{tmpl: ad, autoSeq: ad.Seq == 0, autoExpiry: ad.Expiry.IsZero()}
	if err := s.signLocked(own); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("publish: %w", err)
	}
	s.own = own
	signed := own.signed.Clone()
	startLoop := !s.republishing
	s.republishing = true
	s.mu.Unlock()

	if startLoop {
		s.life.Lock()
		if !s.closed {
			s.wg.Add(1)
			go s.republishLoop(d)
		}
		s.life.Unlock()
	}
	return s.provide(ctx, d, &signed)
}

// signLocked fills the automatic fields of o.tmpl and signs it into o.
func (s *Service) signLocked(o *ownAdvert) error {
	now := s.cfg.Now()
	ad := o.tmpl.Clone()
	if o.autoSeq {
		ad.Seq = max(s.ownSeq+1, uint64(now.UnixMilli()))
	}
	if ad.Seq <= s.ownSeq {
		return fmt.Errorf("%w: seq %d not above %d", ErrReplay, ad.Seq, s.ownSeq)
	}
	if o.autoExpiry {
		ad.Expiry = now.Add(s.cfg.AdvertTTL).Truncate(time.Second)
	}
	if ad.Stake.IsZero() && ad.Payee != "" && s.ownStakePayee == ad.Payee && now.Before(s.ownStake.Expiry) {
		ad.Stake = s.ownStake
	}
	addrs := ad.Addrs
	if len(addrs) == 0 {
		addrs = s.h.Addrs()
	}
	ad.Addrs = nil
	keepPrivate := s.cfg.AllowPrivate || s.cfg.AllowSameNetwork
	for _, a := range addrs {
		if !keepPrivate && isPrivateMultiaddr(a) {
			continue // never advertise Docker-bridge, LAN or loopback addresses
		}
		if a != nil && len(ad.Addrs) < MaxAddrs && len(a.Bytes()) <= MaxAddrLen {
			ad.Addrs = append(ad.Addrs, a)
		}
	}
	env, err := SignAdvert(&ad, s.priv)
	if err != nil {
		return err
	}
	signed, err := openUnchecked(env)
	if err != nil {
		return err
	}
	// Persist the seq before serving it, so a restart with a clock that
	// went backwards still publishes above it (clients refuse lower ones).
	if err := s.cache.putOwnSeq(ad.Seq); err != nil {
		return fmt.Errorf("persist seq: %w", err)
	}
	s.ownSeq = ad.Seq
	o.signed, o.env = signed, env
	return nil
}

// provideKeys returns the content keys ad is provided under.
func provideKeys(ad *Advert) []cid.Cid {
	var keys []cid.Cid
	for _, r := range ad.Roles {
		keys = append(keys, roleKey(r))
	}
	if ad.HasRole(RoleExit) {
		for _, c := range portClasses(ad.ExitPorts) {
			keys = append(keys, portClassKey(c))
		}
	}
	return keys
}

// provide announces ad under its keys through d. It must not take s.life:
// the republish loop calls it while Close holds s.life waiting for it.
func (s *Service) provide(ctx context.Context, d *dht.IpfsDHT, ad *Advert) error {
	var errs []error
	for _, k := range provideKeys(ad) {
		if err := d.Provide(ctx, k, true); err != nil {
			errs = append(errs, err)
		}
		// If ground IDs hold the key's closest positions, also put the
		// record with the servers beyond them (censor.go).
		s.provideBeyond(ctx, d, k.Hash())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("publish: provide: %w", err)
	}
	return nil
}

// republishLoop re-signs and re-provides the own advert every Republish.
// Owned by the Service: it stops when Close cancels s.ctx.
func (s *Service) republishLoop(d *dht.IpfsDHT) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.Republish)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		payee := s.own.tmpl.Payee
		s.mu.Unlock()
		s.refreshOwnStake(s.ctx, payee)
		s.mu.Lock()
		err := s.signLocked(s.own)
		signed := s.own.signed.Clone()
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("advert re-sign failed", "err", err)
			continue
		}
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Republish/2)
		if err := s.provide(ctx, d, &signed); err != nil {
			s.log.Debug("advert republish incomplete", "err", err)
		}
		cancel()
	}
}

// Find asks the DHT for providers of role (gatherProviders: the servers
// closest to the key, at most 16 random records from each, interleaved),
// fetches and verifies every candidate's advert (16 at a time, each within
// 3 s) and returns up to max of them (max <= 0: 64). Providers whose advert
// fails are skipped, logged at debug and not asked again for FailBackoff.
// Every verified advert also enters the cache used by SelectPath. A DHT
// server stuffing tarpit records delays it by at most about one candidate
// timeout (3 s). It returns what it found when ctx ends; an error only if
// the service is not running.
func (s *Service) Find(ctx context.Context, role Role, max int) ([]Advert, error) {
	if !validRole(role) {
		return nil, fmt.Errorf("%w: role %q", ErrBadConfig, role)
	}
	return s.find(ctx, roleKey(role), max, func(a *Advert) bool { return a.HasRole(role) })
}

// FindExits is Find for exits whose policy may allow port, using the
// port-class key when port is in a class (bitcoin, lightning, electrum,
// web) so the DHT returns only exits that claim it.
func (s *Service) FindExits(ctx context.Context, port uint16, max int) ([]Advert, error) {
	key := roleKey(RoleExit)
	if c := portClass(port); c != "" {
		key = portClassKey(c)
	}
	return s.find(ctx, key, max, func(a *Advert) bool {
		return a.HasRole(RoleExit) && (port == 0 || a.AllowsPort(port))
	})
}

func (s *Service) find(ctx context.Context, key cid.Cid, max int, keep func(*Advert) bool) ([]Advert, error) {
	d, err := s.running()
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		max = 64
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cands := s.gatherProviders(ctx, d, key)
	var (
		mu  sync.Mutex
		out []Advert
		wg  sync.WaitGroup
	)
	sem := make(chan struct{}, DefaultFetchParallel)
	// Every candidate is validated (in parallel, each within
	// candidateTimeout): the view is the whole bounded sample, not the
	// first answers. What Find returns is capped at max; the cache keeps
	// every verified advert.
loop:
	for _, ai := range cands {
		if s.isBad(ai.ID) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			break loop
		}
		wg.Add(1)
		go func(ai peer.AddrInfo) {
			defer wg.Done()
			defer func() { <-sem }()
			fctx, fcancel := context.WithTimeout(ctx, min(s.cfg.FetchTimeout, candidateTimeout))
			ad, err := s.fetch(fctx, ai)
			fcancel()
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug("advert rejected", "peer", ai.ID, "err", err)
					s.markBad(ai.ID)
				}
				return
			}
			if !keep(&ad) {
				return
			}
			mu.Lock()
			if len(out) < max {
				out = append(out, ad)
			}
			mu.Unlock()
		}(ai)
	}
	wg.Wait()
	return out, nil
}

// gatherProviders collects provider records for key without letting one
// DHT server decide the view: it asks the DHT for the peers closest to the
// key, asks each of them (in parallel, within responderTimeout) for its
// providers, keeps at most maxPerResponder random ones from each, and
// interleaves the responders' lists round-robin, our own provider store
// first, up to MaxProviders candidates. A server stuffing hundreds of
// records (tarpits, Sybils) thus contributes as many as any honest one.
func (s *Service) gatherProviders(ctx context.Context, d *dht.IpfsDHT, key cid.Cid) []peer.AddrInfo {
	mhKey := key.Hash()
	var lists [][]peer.AddrInfo
	if local, err := d.ProviderStore().GetProviders(ctx, mhKey); err == nil {
		lists = append(lists, s.sampleProviders(local))
	}
	cctx, ccancel := context.WithTimeout(ctx, closestTimeout)
	closest, err := d.GetClosestPeers(cctx, string(mhKey))
	ccancel()
	if err != nil && len(closest) == 0 {
		s.log.Debug("closest-peers lookup failed", "err", err)
	}
	// Ground IDs closest to the key would answer with nothing: if the
	// closest peers look ground, ask the servers beyond them too.
	for _, p := range s.beyondCaptured(ctx, d, mhKey, closest) {
		if !slices.Contains(closest, p) {
			closest = append(closest, p)
		}
	}
	pm, err := dhtpb.NewProtocolMessenger(d.MessageSender())
	if err == nil && len(closest) > 0 {
		got := make(chan []peer.AddrInfo, len(closest))
		for _, p := range closest {
			go func(p peer.ID) {
				rctx, rcancel := context.WithTimeout(ctx, responderTimeout)
				defer rcancel()
				provs, _, err := pm.GetProviders(rctx, p, mhKey)
				if err != nil {
					got <- nil
					return
				}
				infos := make([]peer.AddrInfo, 0, min(len(provs), 4*maxPerResponder))
				for _, pi := range provs {
					if pi != nil && len(infos) < 4*maxPerResponder {
						infos = append(infos, *pi)
					}
				}
				got <- s.sampleProviders(infos)
			}(p)
		}
		for range closest {
			if l := <-got; len(l) > 0 {
				lists = append(lists, l)
			}
		}
	}
	seen := map[peer.ID]bool{s.h.ID(): true}
	var out []peer.AddrInfo
	for i := 0; len(out) < s.cfg.MaxProviders; i++ {
		more := false
		for _, l := range lists {
			if i >= len(l) {
				continue
			}
			more = true
			if ai := l[i]; !seen[ai.ID] && len(out) < s.cfg.MaxProviders {
				seen[ai.ID] = true
				out = append(out, ai)
			}
		}
		if !more {
			break
		}
	}
	return out
}

// sampleProviders returns at most maxPerResponder of l, chosen at random.
func (s *Service) sampleProviders(l []peer.AddrInfo) []peer.AddrInfo {
	l = slices.Clone(l)
	s.mu.Lock()
	s.rng.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	s.mu.Unlock()
	return l[:min(len(l), maxPerResponder)]
}
