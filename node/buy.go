package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/payment"
	"github.com/co-infuse/co-infuse/voucher"
	"github.com/co-infuse/co-infuse/voucher/mint"
)

// The purchase path (VOUCHERS.md §3.7, THREAT_MODEL "Payments"): the
// wallet reaches a node's mint through dialMint. Only the client's entry
// guards, which see its address on every circuit anyway, are reached
// directly; every other node only ever sees a purchase arrive over a
// circuit whose last hop is that node, from its previous hop.

// mintTarget is the one BEGIN target of cell.ServiceMint.
var mintTarget = func() cell.Target {
	t, err := cell.ParseTarget(cell.MintTarget)
	if err != nil {
		panic(err) // unreachable: a constant
	}
	return t
}()

// dialMint is the wallet's Dial: one mint exchange with seller. A guard is
// reached on a direct /co-infuse/mint/1 stream; any other node through a
// new circuit [guard, middles…, seller] of circuit.hops hops built for
// this one request and closed with its stream, so two requests share no
// circuit (they are linked by their quote ID anyway, not by a circuit).
func (n *Node) dialMint(ctx context.Context, seller peer.ID) (io.ReadWriteCloser, error) {
	if n.isGuard(seller) {
		s, err := n.host.NewStream(ctx, seller, protocol.ID(voucher.ProtocolID))
		if err != nil {
			return nil, fmt.Errorf("direct mint stream to guard: %w", err)
		}
		return s, nil
	}
	c, err := n.buildToMint(ctx, seller)
	if err != nil {
		return nil, err
	}
	s, err := c.Dial(ctx, cell.ServiceMint, mintTarget)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("mint stream through a circuit: %w", err)
	}
	return &circuitStream{Stream: s, c: c, n: n}, nil
}

// isGuard reports whether p is one of the client's entry guards.
func (n *Node) isGuard(p peer.ID) bool {
	return slices.ContainsFunc(n.disc.Guards(), func(g discovery.GuardStatus) bool { return g.Peer == p })
}

// buildToMint builds a circuit whose last hop is seller: a path of
// circuit.hops − 1 hops from discovery (a guard first, seller excluded),
// then seller. A one-hop setting still uses a guard in front, so seller
// never sees the client. The seller is asked for a mint-only circuit
// (PROTOCOL.md §4.5: the client may hold none of its vouchers yet); the
// guard and middles are paid in their handshakes like any circuit. A
// middle whose vouchers the wallet does not hold is left out (the path is
// then shorter: the guard extends straight to the seller), so the first
// purchases from middles can be made while the wallet holds only its
// guards' vouchers.
func (n *Node) buildToMint(ctx context.Context, seller peer.ID) (*circuit.Circuit, error) {
	last, err := n.disc.Lookup(ctx, seller)
	if err != nil {
		return nil, fmt.Errorf("purchase circuit: advert of the seller: %w", err)
	}
	ads, err := n.disc.SelectPath(ctx, discovery.PathRequest{
		Hops:        max(n.cfg.Circuit.Hops-1, 1),
		Final:       discovery.RoleRelay,
		MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
		Exclude:     []peer.ID{seller},
		Prefer:      n.holds,
	})
	if err != nil {
		return nil, fmt.Errorf("purchase circuit: %w", err)
	}
	if !n.isGuard(ads[0].Peer) && len(n.disc.Guards()) > 0 {
		return nil, errors.New("purchase circuit: first hop is not a guard") // unreachable: SelectPath puts a guard first
	}
	kept := []discovery.Advert{ads[0]}
	for _, ad := range ads[1:] {
		if ad.Payee == "" || n.holds(ad.Peer) {
			kept = append(kept, ad)
		}
	}
	ads = append(kept, last)
	hops := make([]circuit.HopInfo, 0, len(ads))
	for _, ad := range ads {
		hops = append(hops, circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey})
	}
	hops[len(hops)-1].Prepay = payment.MintOnly()
	pp := paidPath{ads: ads, final: discovery.RoleRelay}
	if err := n.attachPrepay(hops, &pp, true); err != nil {
		return nil, fmt.Errorf("purchase circuit: %w", err)
	}
	c, err := n.engine.Build(ctx, hops)
	if err != nil {
		return nil, fmt.Errorf("purchase circuit: %w", err)
	}
	return c, nil
}

// circuitStream is a mint stream whose circuit ends with it. Its
// circuit's cells count in the client's per-node totals (status), as the
// hops count them in theirs.
type circuitStream struct {
	*circuit.Stream
	c    *circuit.Circuit
	n    *Node
	once sync.Once
}

// mintEndWait bounds how long Close waits for the mint's END after its
// answer, so no cell is still on its way when the circuit closes (the hops
// would have charged a cell the client never counted).
const mintEndWait = 2 * time.Second

func (s *circuitStream) Close() error {
	_ = s.Stream.SetReadDeadline(time.Now().Add(mintEndWait))
	_, _ = io.CopyN(io.Discard, s.Stream, voucher.MaxMessageSize) // the mint sends nothing after its answer but END
	err := s.Stream.Close()
	s.once.Do(func() {
		s.c.Close()
		s.n.totals.fold(s.c, nil)
	})
	return err
}

// mintVia is what this node's mint learns of a request that arrived
// through a circuit: the previous hop and its link's address.
func (n *Node) mintVia(prev peer.ID) mint.Via {
	v := mint.Via{Peer: prev}
	for _, c := range n.host.Network().ConnsToPeer(prev) {
		v.Addr = c.RemoteMultiaddr()
		break
	}
	return v
}

// WithClock sets the wallet's clock (purchase times, budget window,
// expiry checks); tests move it forward. Default time.Now.
func WithClock(now func() time.Time) Option {
	return func(n *Node) error { n.now = now; return nil }
}

// WithMintObserver has the node's mint report where each request came
// from (mint.Config.Observe); tests use it. Default none.
func WithMintObserver(f func(mint.Via)) Option {
	return func(n *Node) error { n.mintObserve = f; return nil }
}

// errNotHeld: a middle or exit whose vouchers the wallet does not hold is
// not bought from at circuit time.
var errNotHeld = errors.New("no vouchers held for this hop; they are bought ahead at random times, never while a circuit waits (only from entry guards)")

// buyOnDemand is the payment schedule's Buy: a short balance at an entry
// guard is bought at once (directly: the guard sees the client anyway);
// at any other hop nothing is bought while the circuit waits (a purchase
// just before a TOPUP would tie the two together). The hop is kept in use,
// so automatic purchase refills it at its next random round.
func (n *Node) buyOnDemand(ctx context.Context, node peer.ID, sats uint64) error {
	w := n.pay().wallet
	w.Track(node)
	if !n.isGuard(node) {
		return errNotHeld
	}
	_, err := w.Buy(ctx, node, sats)
	return err
}

// holds is path selection's Prefer: the wallet holds enough of p's
// vouchers for a circuit's prepay at the highest price this client pays
// (prepay checks the hop's own price). Without a wallet every node is
// equal.
func (n *Node) holds(p peer.ID) bool {
	return n.pay() != nil && n.pay().wallet != nil &&
		n.pay().wallet.Holds(p, payment.SatsFor(payment.PrepayBytes, n.cfg.Discovery.MaxPriceSatPerMB))
}

// maxBuyCandidates bounds the nodes automatic purchase keeps balances at
// besides those in use.
const maxBuyCandidates = 8

// buyCandidates is the wallet's Candidates: the entry guards, the nodes
// whose vouchers it already holds, then other relays and exits that sell
// vouchers within the price cap, in discovery's (peer ID) order, up to
// maxBuyCandidates. Path selection prefers held nodes, so this is the set
// circuits are built from.
func (n *Node) buyCandidates() []peer.ID {
	var out []peer.ID
	add := func(p peer.ID) {
		if len(out) < maxBuyCandidates && !slices.Contains(out, p) && p != n.host.ID() {
			out = append(out, p)
		}
	}
	for _, g := range n.disc.Guards() {
		add(g.Peer)
	}
	known := n.disc.Known()
	for _, k := range known {
		if n.holds(k.Peer) {
			add(k.Peer)
		}
	}
	for _, k := range known {
		if k.Expiry.IsZero() || !n.sellsWithinCap(k) {
			continue
		}
		add(k.Peer)
	}
	return out
}

// sellsWithinCap reports whether a known node relays or exits at a price
// within discovery.max_price_sat_per_mb in at least one of those roles:
// each hop is priced by the role it plays (hopPrice), so a relay whose
// exit price is above the cap is still worth vouchers as a middle.
func (n *Node) sellsWithinCap(k discovery.PeerStatus) bool {
	for _, r := range k.Roles {
		if r != discovery.RoleRelay && r != discovery.RoleExit {
			continue
		}
		if cap := n.cfg.Discovery.MaxPriceSatPerMB; cap == 0 || k.Prices[r] <= cap {
			return true
		}
	}
	return false
}
