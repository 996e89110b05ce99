package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/circuit/pool"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/payment"
	"github.com/co-infuse/co-infuse/proxy"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// startClient wires the client's circuit pool to discovery (paths), the
// engine (builds) and, with a wallet, the payment schedule (prepay at
// build, top-ups as bytes flow).
func (n *Node) startClient() error {
	if n.pay != nil && n.pay.wallet != nil {
		w := n.pay.wallet
		var err error
		n.payer, err = payment.NewClient(payment.ClientConfig{
			Reserve: func(node peer.ID, sats uint64) (payment.Reservation, error) {
				payload, vs, err := w.ReserveBatch(node, sats)
				if err != nil {
					return payment.Reservation{}, err
				}
				var value uint64
				for _, v := range vs {
					value += v.Amount
				}
				return payment.Reservation{
					Payload: payload,
					Sats:    value,
					Commit:  func() error { return w.MarkSpent(vs) },
					Release: func() error { return w.Release(vs) },
					Unsure:  func() error { return w.Unsure(vs) },
				}, nil
			},
			Buy:              n.buyOnDemand,
			TargetBalanceSat: n.cfg.Payments.TargetBalanceSat,
			Logger:           n.log,
		})
		if err != nil {
			return fmt.Errorf("payment schedule: %w", err)
		}
	}
	pcfg := pool.Config{
		Select:         n.selectPath,
		Build:          n.engine.Build,
		Report:         n.disc.Report,
		MaxIsolated:    n.cfg.Circuit.MaxIsolated,
		MaxDirtiness:   n.cfg.Circuit.MaxDirtiness,
		IdleClose:      n.cfg.Circuit.IdleClose,
		Preemptive:     n.cfg.Circuit.Preemptive,
		PredictedPorts: n.cfg.Circuit.PredictedPorts,
		BuildTimeout:   n.cfg.Circuit.BuildTimeout,
		Logger:         n.log,
	}
	pcfg.Prepare = n.prepare
	var err error
	if n.pool, err = pool.New(pcfg); err != nil {
		return fmt.Errorf("circuit pool: %w", err)
	}
	n.pool.Start()
	return n.startOnionServices()
}

// selectPath is the pool's Select: a path from discovery for port, whose
// adverts travel along (Path.Meta) for prepay.
func (n *Node) selectPath(ctx context.Context, port uint16, exclude []peer.ID) (pool.Path, error) {
	ads, err := n.disc.SelectPath(ctx, discovery.PathRequest{
		Hops:        n.cfg.Circuit.Hops,
		Final:       discovery.RoleExit,
		Port:        port,
		MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
		Exclude:     exclude,
		Prefer:      n.holds,
	})
	if err != nil {
		if len(n.disc.Known()) == 0 {
			return pool.Path{}, fmt.Errorf("select path: %w (this node knows no other node: check discovery.bootstrap in %s)", err, filepath.Join(n.cfg.DataDir, ConfigFile))
		}
		return pool.Path{}, fmt.Errorf("select path: %w", err)
	}
	hops := make([]circuit.HopInfo, len(ads))
	for i, ad := range ads {
		hops[i] = circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
	}
	return pool.Path{Hops: hops, Accepts: ads[len(ads)-1].AllowsPort, Meta: paidPath{ads, discovery.RoleExit}}, nil
}

// paidPath is a pool.Path's Meta for prepay: the hops' adverts, in path
// order, and the role the last hop plays in the circuit.
type paidPath struct {
	ads   []discovery.Advert
	final discovery.Role
}

// hopPrice is what hop i of p charges per MB for the role it plays there,
// as its ledger prices the session (Config.ledgerPrices): the relay price
// for a guard or middle, the final role's price for the last hop. A node
// that also runs a dearer role is not charged that role's price as a
// middle.
func (p paidPath) hopPrice(i int) uint64 {
	if i == len(p.ads)-1 {
		return p.ads[i].Price(p.final)
	}
	return p.ads[i].Price(discovery.RoleRelay)
}

// prepare is the pool's Prepare, run once per built circuit before it is
// used: with a wallet, every hop whose advert names a Lightning payee is
// paid ahead (payment.PrepayBytes at its advertised price), and the
// circuit's figures are folded into the per-node totals when it closes,
// and why it closed is logged (logCircuitClosed).
func (n *Node) prepare(ctx context.Context, c *circuit.Circuit, p pool.Path) error {
	var pc *payment.Circuit
	if n.payer != nil {
		var err error
		if pc, err = n.prepay(ctx, c, p); err != nil {
			return err
		}
		if pc != nil {
			n.paid.Store(c.ID(), pc)
		}
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		select {
		case <-c.Done():
			logCircuitClosed(n.log, c, pc)
		case <-n.ctx.Done():
		}
		n.totals.fold(c, pc)
		n.paid.Delete(c.ID())
		pc.Close()
	}()
	return nil
}

// prepay pays the circuit's paid hops ahead and returns its payment ledger,
// or nil when no hop sells vouchers.
func (n *Node) prepay(ctx context.Context, c *circuit.Circuit, p pool.Path) (*payment.Circuit, error) {
	pp, _ := p.Meta.(paidPath)
	var hops []payment.Hop
	for i, ad := range pp.ads {
		if ad.Payee == "" {
			continue
		}
		hops = append(hops, payment.Hop{Index: i, Peer: ad.Peer, PriceSatPerMB: pp.hopPrice(i)})
		n.pay.wallet.Track(ad.Peer) // automatic purchase keeps a balance here
	}
	if len(hops) == 0 {
		return nil, nil
	}
	// A middle or exit whose vouchers are not held is never bought from
	// now (buyOnDemand); find out before prepaying anyone, so a circuit
	// that cannot be paid costs nothing.
	for _, h := range hops {
		if !n.isGuard(h.Peer) && !n.pay.wallet.Holds(h.Peer, payment.SatsFor(payment.PrepayBytes, h.PriceSatPerMB)) {
			return nil, fmt.Errorf("prepay circuit: hop %d: %w", h.Index+1, errNotHeld)
		}
	}
	pc, err := n.payer.Open(ctx, c, hops)
	if err != nil {
		return nil, fmt.Errorf("prepay circuit: %w", err)
	}
	return pc, nil
}

// paidCircuit returns c's payment ledger, or nil when it pays nobody.
func (n *Node) paidCircuit(c *circuit.Circuit) *payment.Circuit {
	if v, ok := n.paid.Load(c.ID()); ok {
		return v.(*payment.Circuit)
	}
	return nil
}

// errNoClient: Dial or Resolve on a node without the client role.
var errNoClient = errors.New("node: client role not enabled")

// errOnion answers a RESOLVE of a .onion host here, with no circuit built
// and nothing sent: an exit that got the name would learn which onion
// peers the user dials, and an onion service has no address to resolve.
var errOnion = fmt.Errorf("node: .onion hosts have no address to resolve: %w", proxy.ErrOnionNotFound)

// Dial opens a stream to target (parsed by the front end, never resolved
// here) over a circuit of isolation key iso whose exit accepts target's
// port. A .onion target goes through the onion-service path (dialOnion),
// never to an exit.
// If the circuit dies before the exit answers, nothing has reached the
// target yet, so the stream is retried once on another circuit.
func (n *Node) Dial(ctx context.Context, iso proxy.Isolation, target cell.Target) (net.Conn, error) {
	if n.pool == nil {
		return nil, errNoClient
	}
	if target.IsOnion() {
		return n.dialOnion(ctx, target)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		c, err := n.pool.Get(ctx, pool.Key(iso), target.Port())
		if err != nil {
			n.log.Warn("no circuit for a stream", "err", err)
			return nil, err
		}
		s, err := c.Dial(ctx, cell.ServiceExit, target)
		if err == nil {
			n.pool.StreamOpened(c)
			return n.paidCircuit(c).Wrap(s), nil
		}
		lastErr = err
		if c.Err() == nil && !errors.Is(err, circuit.ErrClosed) {
			return nil, err // the exit answered: a real refusal, not a broken path
		}
		// Which hop broke the circuit is unknown here, so nobody is
		// blamed; a dead hop shows itself when the next build fails at it.
		n.log.Debug("circuit failed before stream opened; retrying on a new circuit", "circuit", c.ID(), "err", err)
	}
	return nil, lastErr
}

// resolvePort is the port a RESOLVE's circuit is chosen for: any exit
// resolves, and most accept 443.
const resolvePort = 443

// Resolve asks the exit of a circuit of iso to resolve host (Tor's
// RESOLVE); Circuit.Resolve vets host with cell.CheckHost. A .onion host is
// answered at once with proxy.ErrOnionNotFound, as in Dial.
func (n *Node) Resolve(ctx context.Context, iso proxy.Isolation, host string) (netip.Addr, error) {
	if n.pool == nil {
		return netip.Addr{}, errNoClient
	}
	if h, err := cell.CheckHost(host); err == nil && strings.HasSuffix(h, ".onion") { // as cell.Target.IsOnion
		return netip.Addr{}, errOnion
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	defer cancel()
	c, err := n.pool.Get(ctx, pool.Key(iso), resolvePort)
	if err != nil {
		return netip.Addr{}, err
	}
	return c.Resolve(ctx, host)
}

// CircuitInfo describes one client circuit for the admin API and tests.
type CircuitInfo struct {
	ID        uint64   `json:"id"`
	Isolation string   `json:"isolation"` // username only; never the password
	Path      []string `json:"path"`      // peer IDs, first hop first
	Streams   int      `json:"streams"`
	Port      uint16   `json:"port"`  // the port it was built for
	Dirty     bool     `json:"dirty"` // takes no new streams
	Clean     bool     `json:"clean"` // pre-built, not yet used
}

// Circuits lists the client's open circuits.
func (n *Node) Circuits() []CircuitInfo {
	if n.pool == nil {
		return nil
	}
	var out []CircuitInfo
	for _, c := range n.pool.Snapshot() {
		ci := CircuitInfo{ID: c.ID, Isolation: c.Isolation, Streams: c.Streams, Port: c.Port, Dirty: c.Dirty, Clean: c.Clean}
		for _, p := range c.Path {
			ci.Path = append(ci.Path, p.String())
		}
		out = append(out, ci)
	}
	return out
}

// PoolStats reports the client's circuit pool counters (pre-built circuits
// claimed, on-demand builds), or zero without the client role.
func (n *Node) PoolStats() pool.Stats {
	if n.pool == nil {
		return pool.Stats{}
	}
	return n.pool.Stats()
}

// dialOnion connects to an onion service through a rendezvous point
// (rendezvous.Manager.Dial) and maps its failures to the proxy's onion
// sentinels, which become Tor's extended SOCKS codes.
func (n *Node) dialOnion(ctx context.Context, target cell.Target) (net.Conn, error) {
	if n.hs == nil {
		return nil, errOnion
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	defer cancel()
	c, err := n.hs.Dial(ctx, target.Host(), target.Port())
	if err == nil {
		return c, nil
	}
	var s error
	switch {
	case errors.Is(err, rendezvous.ErrBadAddress):
		s = proxy.ErrOnionBadAddress
	case errors.Is(err, rendezvous.ErrDescriptorNotFound):
		s = proxy.ErrOnionNotFound
	case errors.Is(err, rendezvous.ErrIntroFailed):
		s = proxy.ErrOnionIntroFailed
	case errors.Is(err, rendezvous.ErrIntroTimeout):
		s = proxy.ErrOnionIntroTimedOut
	default:
		s = proxy.ErrOnionRendezvousFailed
	}
	n.log.Debug("onion service connection failed", "err", err)
	return nil, fmt.Errorf("%w: %w", s, err)
}
