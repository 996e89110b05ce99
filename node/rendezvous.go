package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/circuit/pool"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// RendezvousObserver is told what this node's rendezvous role learns (see
// rendezvous.ServerConfig.Observe). Tests use it to show that rendezvous
// and intro points see only the previous hop and ciphertext.
type RendezvousObserver func(kind string, prev peer.ID, spliced []byte)

// WithRendezvousObserver sets the observer of the rendezvous role.
func WithRendezvousObserver(f RendezvousObserver) Option {
	return func(n *Node) error { n.hsObserve = f; return nil }
}

// startRendezvousPoint serves the rendezvous role at the last hop:
// rendezvous splices, introduction points and the descriptor directory
// (PROTOCOL.md §7). Stored descriptors are announced through discovery.
func startRendezvousPoint(n *Node, mux *circuit.Mux) (io.Closer, error) {
	srv := rendezvous.NewServer(rendezvous.ServerConfig{
		Provide: func(ctx context.Context, index [32]byte) error {
			if n.disc == nil {
				return errors.New("discovery not started")
			}
			return n.disc.ProvideIndex(ctx, index)
		},
		Self: n.host.ID(),
		HSDirView: func() []peer.ID {
			var ids []peer.ID
			for _, h := range n.hsdirView() {
				ids = append(ids, h.Peer)
			}
			return ids
		},
		Observe: n.hsObserve,
		Logger:  n.log,
	})
	return srv, mux.Handle(cell.ServiceRendezvous, srv.Begin)
}

// startOnionServices builds the client's rendezvous.Manager: Dial for
// .onion targets and Publish for the control port. Its circuits are built
// here (not by the pool: each ends at a node the protocol chooses) and
// paid like the pool's.
func (n *Node) startOnionServices() error {
	rc := n.cfg.Rendezvous
	cfg := rendezvous.Config{
		Build: n.buildTo,
		Pick:  n.pickRendezvous,
		Find:  n.findDescriptor,
		HSDirView: func(context.Context) ([]circuit.HopInfo, error) {
			return n.onionHSDirView(), nil
		},
		RendezvousPoint:         n.knownRendezvousPoint,
		IntroPoints:             rc.IntroPoints,
		AllowNonLoopbackTargets: rc.AllowNonLoopbackTargets,
		PoWEffort:               rc.PoWEffort,
		Logger:                  n.log,
	}
	if !rc.DisableVanguards {
		cfg.Relays = n.vanguardCandidates
	}
	m, err := rendezvous.New(cfg)
	if err != nil {
		return err
	}
	n.hs = m
	n.dests = append(n.dests, m)
	return nil
}

// Rendezvous returns the onion-service manager, or nil without the client
// role. The control port publishes through it.
func (n *Node) Rendezvous() *rendezvous.Manager { return n.hs }

// hopInfo turns an advert into a circuit hop.
func hopInfo(ad discovery.Advert) circuit.HopInfo {
	return circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
}

// buildTo builds guard → via... → middle → last, and prepares (pays) it
// like a pool circuit.
func (n *Node) buildTo(ctx context.Context, last circuit.HopInfo, via []circuit.HopInfo) (*circuit.Circuit, error) {
	excl := []peer.ID{last.Peer, n.host.ID()}
	for _, v := range via {
		excl = append(excl, v.Peer)
	}
	ads, err := n.disc.SelectPath(ctx, discovery.PathRequest{
		Hops:        2,
		Final:       discovery.RoleRelay,
		MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
		Exclude:     excl,
	})
	if err != nil {
		return nil, fmt.Errorf("select path: %w", err)
	}
	hops := []circuit.HopInfo{hopInfo(ads[0])}
	meta := []discovery.Advert{ads[0]}
	for _, v := range via {
		hops = append(hops, v)
		ad, _ := n.disc.Cached(v.Peer) // zero (unpaid) if unknown
		meta = append(meta, ad)
	}
	hops = append(hops, hopInfo(ads[1]), last)
	lastAd, _ := n.disc.Cached(last.Peer)
	meta = append(meta, ads[1], lastAd)
	pp := paidPath{ads: meta, final: discovery.RoleRendezvous}
	if err := n.attachPrepay(hops, &pp, false); err != nil {
		return nil, err
	}
	c, err := n.engine.Build(ctx, hops)
	if err != nil {
		var be *circuit.BuildError
		if errors.As(err, &be) && be.Hop < len(hops) {
			n.disc.Report(hops[be.Hop].Peer, false)
		}
		return nil, err
	}
	if err := n.prepare(ctx, c, pool.Path{Hops: hops, Meta: pp}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// pickRendezvous chooses up to k distinct rendezvous-role nodes by the
// path weights.
func (n *Node) pickRendezvous(ctx context.Context, k int, exclude []peer.ID) ([]circuit.HopInfo, error) {
	excl := append(slices.Clone(exclude), n.host.ID())
	var out []circuit.HopInfo
	for range k {
		ads, err := n.disc.SelectPath(ctx, discovery.PathRequest{
			Hops:        1,
			Final:       discovery.RoleRendezvous,
			MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
			Exclude:     excl,
		})
		if err != nil {
			if len(out) > 0 {
				break
			}
			return nil, err
		}
		out = append(out, hopInfo(ads[0]))
		excl = append(excl, ads[0].Peer)
	}
	return out, nil
}

// hsdirView is what the HSDir ring ranks (rendezvous/hsring.go): the
// fresh rendezvous-role adverts discovery holds, and this node when it has
// the role (discovery caches no advert of its own node, and leaving it out
// would make this node's ring differ from everyone else's), less the
// nodes the HSDir age gate keeps out (rendezvous.HSDirEligible: known to
// this node for under a day, unless found while it bootstrapped). Empty
// before discovery starts.
func (n *Node) hsdirView() []circuit.HopInfo {
	if n.disc == nil {
		return nil
	}
	var out []circuit.HopInfo
	for _, ad := range n.disc.Fresh(discovery.RoleRendezvous) {
		out = append(out, hopInfo(ad))
	}
	if n.cfg.Has(RoleRendezvous) && n.onion != nil {
		out = append(out, circuit.HopInfo{Peer: n.host.ID(), OnionKey: n.onion.Public(), Addrs: n.host.Addrs()})
	}
	ids := make([]peer.ID, len(out))
	for i, h := range out {
		ids[i] = h.Peer
	}
	first, since, now := n.disc.FirstSeen(ids)
	return rendezvous.GateHSDirView(out, n.host.ID(), first, since, now)
}

// onionHSDirView is the HSDir view of this node's own onion-service
// client and services: hsdirView without this node. Every HSDir they ask
// is reached over a circuit (buildTo), and one ending at this node would
// be a loop through its guard and middle back to itself: an unpaid last
// hop (discovery caches no advert of this node) that its own paid relay
// refuses, and cells that leave and come back over its own link, which a
// watcher of that link can match. So the ring's next-ranked HSDir takes this
// node's place for its own lookups and uploads (it still accepts: an
// HSDir stores while among hsdirAcceptRank of its view); this node's
// HSDir role keeps counting itself (hsdirView) for the puts it receives.
func (n *Node) onionHSDirView() []circuit.HopInfo {
	self := n.host.ID()
	return slices.DeleteFunc(n.hsdirView(), func(h circuit.HopInfo) bool { return h.Peer == self })
}

// findDescriptor asks discovery for the HSDirs that announced index.
func (n *Node) findDescriptor(ctx context.Context, index [32]byte, max int) ([]circuit.HopInfo, error) {
	ads, err := n.disc.FindIndex(ctx, index, max)
	if err != nil {
		return nil, err
	}
	out := make([]circuit.HopInfo, 0, len(ads))
	for _, ad := range ads {
		out = append(out, hopInfo(ad))
	}
	return out, nil
}

// knownRendezvousPoint is p's hop from the cached, fresh, verified advert
// when it offers the rendezvous role (rendezvousHop). It never asks p
// (discovery.Lookup would connect this node, the service's, straight to a
// node the client chose).
func (n *Node) knownRendezvousPoint(p peer.ID) (circuit.HopInfo, bool) {
	var self *circuit.HopInfo
	if n.cfg.Has(RoleRendezvous) && n.onion != nil {
		self = &circuit.HopInfo{Peer: n.host.ID(), OnionKey: n.onion.Public(), Addrs: n.host.Addrs()}
	}
	return rendezvousHop(p, n.host.ID(), self, n.disc.Cached)
}

// rendezvousHop is p's hop if cached has a rendezvous-role advert of it.
// Discovery caches no advert of this node (id self), so for self it is
// selfHop (nil without the rendezvous role): refusing only this node would
// tell a client that names it which node runs the service.
func rendezvousHop(p, self peer.ID, selfHop *circuit.HopInfo, cached func(peer.ID) (discovery.Advert, bool)) (circuit.HopInfo, bool) {
	if p == self {
		if selfHop == nil {
			return circuit.HopInfo{}, false
		}
		return *selfHop, true
	}
	ad, ok := cached(p)
	if !ok || !ad.HasRole(discovery.RoleRendezvous) {
		return circuit.HopInfo{}, false
	}
	return hopInfo(ad), true
}

// vanguardCandidates are the relays the service's layer-2 vanguards are
// drawn from.
func (n *Node) vanguardCandidates(context.Context) ([]circuit.HopInfo, error) {
	var out []circuit.HopInfo
	for _, ad := range n.disc.Fresh(discovery.RoleRelay) {
		if vanguardOK(ad, n.host.ID(), n.cfg.Discovery.MaxPriceSatPerMB) {
			out = append(out, hopInfo(ad))
		}
	}
	return out, nil
}

// vanguardOK reports whether ad may be a layer-2 vanguard: not this node,
// and within the price cap path selection applies to every other hop (a
// vanguard above it, kept for days, would be one the wallet never buys
// from, so every service circuit through it would fail to prepay).
func vanguardOK(ad discovery.Advert, self peer.ID, maxPrice uint64) bool {
	if ad.Peer == self {
		return false
	}
	return maxPrice == 0 || ad.Price(discovery.RoleRelay) <= maxPrice
}
