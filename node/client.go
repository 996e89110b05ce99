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
	"github.com/co-infuse/co-infuse/voucher"
)

// startClient wires the client's circuit pool to discovery (paths), the
// engine (builds) and, with a wallet, the payment schedule (prepay at
// build, top-ups as bytes flow).
func (n *Node) startClient() error {
	if err := n.startPayer(); err != nil {
		return err
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
	if n.gwPool, err = n.newGatewayPool(); err != nil {
		return fmt.Errorf("tor gateway pool: %w", err)
	}
	n.gwPool.Start()
	return n.startOnionServices()
}

// startPayer creates the client's payment schedule (prepay at build,
// top-ups as bytes flow) over the wallet, if there is one: at Start, or
// once a wait for LND ends (paywait.go).
func (n *Node) startPayer() error {
	if p := n.pay(); p != nil && p.wallet != nil {
		w := p.wallet
		reserve := func(batch func(peer.ID, uint64) ([]byte, []voucher.Voucher, error)) func(peer.ID, uint64) (payment.Reservation, error) {
			return func(node peer.ID, sats uint64) (payment.Reservation, error) {
				payload, vs, err := batch(node, sats)
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
			}
		}
		payer, err := payment.NewClient(payment.ClientConfig{
			Reserve:                  reserve(w.ReserveBatch),
			ReserveTopUp:             reserve(w.ReserveBulkBatch),
			Buy:                      n.buyOnDemand,
			Credited:                 n.totals.credited,
			TargetBalanceSat:         n.cfg.Payments.TargetBalanceSat,
			MaxPaidCircuitsPerMinute: n.cfg.Payments.MaxNewCircuitsPerMinute,
			Logger:                   n.log,
		})
		if err != nil {
			return fmt.Errorf("payment schedule: %w", err)
		}
		n.payerPtr.Store(payer)
	}
	return nil
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
	pp := paidPath{ads: ads, final: discovery.RoleExit}
	if err := n.attachPrepay(hops, &pp, false); err != nil {
		return pool.Path{}, err
	}
	return pool.Path{Hops: hops, Accepts: ads[len(ads)-1].AllowsPort, Meta: pp}, nil
}

// paidPath is a pool.Path's Meta for prepay: the hops' adverts, in path
// order, the role the last hop plays in the circuit, and the handshake
// payments of its build (nil when no hop is paid).
type paidPath struct {
	ads   []discovery.Advert
	final discovery.Role
	build *payment.Build
}

// attachPrepay has each paid hop of hops (one whose advert in pp names a
// Lightning payee) paid in its handshake (PROTOCOL.md §4.1): it starts a
// payment.Build, which takes each hop's prepayment from the wallet's
// vouchers just before its handshake, and records it in pp for prepare.
// A paid guard may be bought from at once; a paid middle or last hop
// whose vouchers the wallet does not hold refuses the path (errNotHeld):
// they are bought ahead, never while a circuit waits. Hops whose Prepay is
// already set (a purchase circuit's mint-only last hop) are left alone.
// A purchase circuit (node/buy.go) is not counted against the paid
// circuits per minute and prepays payment.PurchasePrepayBytes per hop.
// Without a wallet it does nothing (and paid hops refuse the circuit);
// while payments wait for LND a path with a paid hop fails with
// errPaymentsNotReady.
func (n *Node) attachPrepay(hops []circuit.HopInfo, pp *paidPath, purchase bool) error {
	payer := n.payer()
	if payer == nil && !n.payWait.waiting() {
		return nil // no wallet: paid hops refuse the circuit
	}
	var paid []payment.Hop
	for i, ad := range pp.ads {
		if ad.Payee == "" || hops[i].Prepay != nil {
			continue
		}
		paid = append(paid, payment.Hop{Index: i, Peer: ad.Peer, PriceSatPerMB: pp.hopPrice(i)})
	}
	if len(paid) == 0 {
		return nil
	}
	if payer == nil {
		// Payments are still waiting for LND (paywait.go): a paid hop
		// is never used unpaid, and the request fails now, not later.
		return n.payWait.notReady()
	}
	w := n.pay().wallet // set before the payer
	for _, h := range paid {
		w.Track(h.Peer) // automatic purchase keeps a balance here
	}
	for _, h := range paid {
		if !n.isGuard(h.Peer) && !w.Holds(h.Peer, payment.SatsFor(payment.PrepayBytes, h.PriceSatPerMB)) {
			return fmt.Errorf("paid circuit: hop %d: %w", h.Index+1, errNotHeld)
		}
	}
	newBuild := func(hs []payment.Hop) (*payment.Build, error) { return payer.NewBuild(hs, true) }
	if purchase {
		newBuild = payer.NewPurchaseBuild
	}
	b, err := newBuild(paid)
	if err != nil {
		return fmt.Errorf("paid circuit: %w", err)
	}
	for _, h := range paid {
		hops[h.Index].Prepay = b.Prepay(h.Index)
	}
	pp.build = b
	return nil
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
// used: with a wallet, the circuit's hops were paid in their handshakes
// (attachPrepay), and its payment ledger starts from there and tops them
// up as bytes flow; the circuit's figures are folded into the per-node
// totals when it closes, and why it closed is logged (logCircuitClosed).
func (n *Node) prepare(ctx context.Context, c *circuit.Circuit, p pool.Path) error {
	var pc *payment.Circuit
	if pp, _ := p.Meta.(paidPath); n.payer() != nil && pp.build != nil {
		var err error
		if pc, err = n.payer().OpenBuilt(c, pp.build); err != nil {
			return fmt.Errorf("paid circuit: %w", err)
		}
		n.paid.Store(c.ID(), pc)
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
		return n.dialOnion(ctx, iso, target)
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
	// Gateway marks a circuit to a tor-gateway last hop (.onion streams
	// with no co-infuse descriptor).
	Gateway bool `json:"gateway,omitempty"`
}

// Circuits lists the client's open circuits: exit circuits, then
// tor-gateway ones.
func (n *Node) Circuits() []CircuitInfo {
	if n.pool == nil {
		return nil
	}
	var out []CircuitInfo
	for i, p := range []*pool.Pool{n.pool, n.gwPool} {
		if p == nil {
			continue
		}
		for _, c := range p.Snapshot() {
			ci := CircuitInfo{ID: c.ID, Isolation: c.Isolation, Streams: c.Streams, Port: c.Port, Dirty: c.Dirty, Clean: c.Clean, Gateway: i == 1}
			for _, p := range c.Path {
				ci.Path = append(ci.Path, p.String())
			}
			out = append(out, ci)
		}
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

// dialOnion connects to an onion service (the front end has already
// refused a malformed address with 0xF6, before any circuit). A co-infuse
// descriptor comes first: the rendezvous path (rendezvous.Manager.Dial),
// whose failures map to the proxy's onion sentinels, which become Tor's
// extended SOCKS codes. Only when no descriptor is found — no HSDir
// announces it, or every one asked says it has none — (or this node has
// no onion-service client) does the stream go to a Tor gateway
// (dialGateway), whose tor's reply byte the client gets unchanged. A found
// descriptor whose introduction or rendezvous fails does not fall back:
// the descriptor proves the service lives on co-infuse, so asking Tor
// would only tell a gateway which service this client wants. This node's
// own tor, if it runs one, never dials for the client.
func (n *Node) dialOnion(ctx context.Context, iso proxy.Isolation, target cell.Target) (net.Conn, error) {
	if n.hs == nil {
		return n.dialGateway(ctx, iso, target)
	}
	hctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	c, err := n.hs.Dial(hctx, target.Host(), target.Port())
	cancel()
	if err == nil {
		return c, nil
	}
	if errors.Is(err, rendezvous.ErrDescriptorNotFound) && ctx.Err() == nil {
		n.log.Debug("no co-infuse descriptor; trying a tor gateway")
		return n.dialGateway(ctx, iso, target)
	}
	var s error
	switch {
	case errors.Is(err, rendezvous.ErrBadAddress):
		s = proxy.ErrOnionBadAddress
	case errors.Is(err, rendezvous.ErrDescriptorNotFound), errors.Is(err, rendezvous.ErrDescriptorUnavailable):
		// Unavailable: HSDirs announce it but could not be asked; no
		// gateway is asked either (it would learn the name), and the
		// client gets tor's "descriptor not found".
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
