package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
	"github.com/co-infuse/co-infuse/proxy"
	"github.com/co-infuse/co-infuse/voucher"
)

// Node is one running co-infuse node. Create it with New, then Start; Close
// stops everything it started and waits for it.
type Node struct {
	cfg  Config
	log  *slog.Logger
	priv crypto.PrivKey

	// Set by Start, read-only afterwards.
	host   host.Host
	engine *circuit.Engine
	disc   *discovery.Service
	exitd  *exit.Dialer
	socks  *proxy.SOCKSServer
	httpc  *proxy.HTTPConnectServer
	admin  *adminServer
	pool   *pool
	pay    *payments // nil when payments are off
	paid   paidMap   // circuit ID → *paidCircuit, for the client's paid circuits
	// advertised is set once the first advert has been built, so that
	// keyset rotations republish it.
	advertised atomic.Bool
	socksLn    net.Listener
	httpLn     net.Listener

	ctx    context.Context // canceled by Close; bounds circuit builds
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine Start launches

	mu      sync.Mutex
	started bool // guarded by mu
	closed  bool // guarded by mu
}

// Option adjusts a Node at construction.
type Option func(*Node) error

// WithLogger sets the logger; the default writes text to stderr at the
// config's level.
func WithLogger(l *slog.Logger) Option {
	return func(n *Node) error { n.log = l; return nil }
}

// New checks cfg and loads (or creates) the node's identity. It starts
// nothing.
func New(cfg Config, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	priv, err := LoadIdentity(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, priv: priv}
	for _, o := range opts {
		if err := o(n); err != nil {
			return nil, err
		}
	}
	if n.log == nil {
		n.log = NewLogger(os.Stderr, cfg.Log.Level)
	}
	return n, nil
}

// NewLogger returns a text slog logger at the named level.
func NewLogger(w *os.File, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level)) // validated by Config.Validate
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// Start brings the node up: host, discovery, circuit engine, exit, front
// ends, admin socket. On error everything already started is stopped.
func (n *Node) Start(ctx context.Context) (err error) {
	n.mu.Lock()
	if n.started || n.closed {
		n.mu.Unlock()
		return errors.New("node: Start called twice or after Close")
	}
	n.started = true
	n.mu.Unlock()
	n.ctx, n.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			n.Close()
		}
	}()

	n.host, err = newHost(n.priv, n.cfg.Network)
	if err != nil {
		return err
	}
	log := n.log.With("peer", n.host.ID().String())
	n.log = log

	relay := n.cfg.Has(RoleRelay) || n.cfg.Has(RoleExit)
	var onion *circuit.OnionKey
	if relay {
		if onion, err = LoadOnionKey(n.cfg.DataDir); err != nil {
			return err
		}
	}
	var exitPorts []discovery.PortRange
	if n.cfg.Has(RoleExit) {
		pol, err := exit.NewPolicy(n.cfg.Exit.Policy, n.cfg.Exit.AllowLoopback)
		if err != nil {
			return fieldErr("exit.policy", "%v", err) // unreachable after Validate
		}
		n.exitd, err = exit.New(pol, exit.WithDialTimeout(n.cfg.Exit.DialTimeout), exit.WithLogger(log))
		if err != nil {
			return fmt.Errorf("exit: %w", err)
		}
		for _, r := range pol.AllowedPorts() {
			exitPorts = append(exitPorts, discovery.PortRange{Lo: r.Lo, Hi: r.Hi})
		}
	}
	if n.cfg.Payments.Enabled {
		republish := func(ks []*voucher.Keyset) {
			// The first advert (below) already carries the keysets the
			// mint starts with; only later rotations need a new one.
			if relay && n.advertised.Load() {
				n.republish(onion, exitPorts, ks)
			}
		}
		if n.pay, err = n.startPayments(ctx, relay, republish); err != nil {
			return err
		}
	}
	ecfg := circuit.Config{
		Host:     n.host,
		OnionKey: onion,
		Logger:   log,
	}
	if n.pay != nil && n.pay.mint != nil {
		// A paid hop: sessions must be prepaid with vouchers (TOPUP)
		// and are charged per relayed cell.
		ss := newSessions(n.pay.mint, n.cfg.hopPriceSatPerMB())
		ecfg.Account, ecfg.TopUp, ecfg.SessionClosed = ss.account, ss.topUp, ss.closed
	}
	if n.exitd != nil {
		ecfg.Begin = func(ctx context.Context, req circuit.BeginRequest) (net.Conn, error) {
			if req.Service != cell.ServiceExit {
				return nil, circuit.ErrServiceNotOffered
			}
			return n.exitd.Dial(ctx, req.Target)
		}
		ecfg.Resolve = n.exitd.Resolve
	}
	if n.engine, err = circuit.New(ecfg); err != nil {
		return fmt.Errorf("circuit engine: %w", err)
	}
	if err = n.engine.Start(); err != nil {
		return fmt.Errorf("circuit engine: %w", err)
	}

	boot, err := bootstrapPeers(n.cfg.Discovery.Bootstrap)
	if err != nil {
		return err
	}
	n.disc, err = discovery.New(n.host, n.priv, discovery.Config{
		Mode:             n.cfg.Discovery.Mode,
		Bootstrap:        boot,
		CacheDir:         filepath.Join(n.cfg.DataDir, "discovery"),
		AllowSameNetwork: n.cfg.Discovery.AllowSameNetwork,
		DHTServer:        relay,
		Logger:           log,
	})
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if err = n.disc.Start(ctx); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if relay {
		var ks []*voucher.Keyset
		if n.pay != nil && n.pay.mint != nil {
			ks = n.pay.mint.Keysets()
		}
		ad, err := n.advert(onion, exitPorts, ks)
		if err != nil {
			return err
		}
		n.advertised.Store(true)
		if err := n.disc.Publish(ctx, ad); err != nil {
			// The first node of a network has nobody to store its
			// provider records yet; keep trying while others join.
			log.Info("advert not published yet; retrying", "err", err)
			n.wg.Add(1)
			go n.publishLoop(ad)
		}
	}
	if n.cfg.Has(RoleClient) {
		n.pool = newPool(n.cfg.Circuit.MaxIsolated, n.buildCircuit)
		n.wg.Add(1)
		go n.idleLoop()
	}
	pcfg := proxy.Config{Dial: n.Dial, Resolve: n.Resolve, Logger: log}
	if n.cfg.SOCKSEnabled() {
		if n.socks, err = proxy.NewSOCKS(pcfg); err != nil {
			return fmt.Errorf("socks: %w", err)
		}
		if n.socksLn, err = net.Listen("tcp", n.cfg.SOCKS.Listen); err != nil {
			return fmt.Errorf("socks.listen %s: %w (is Tor or another co-infuse already using it? set socks.listen)", n.cfg.SOCKS.Listen, err)
		}
		n.serve("socks", func() error { return n.socks.Serve(n.socksLn) })
	}
	if n.cfg.HTTP.Enabled {
		if n.httpc, err = proxy.NewHTTPConnect(pcfg); err != nil {
			return fmt.Errorf("httptunnel: %w", err)
		}
		if n.httpLn, err = net.Listen("tcp", n.cfg.HTTP.Listen); err != nil {
			return fmt.Errorf("httptunnel.listen %s: %w", n.cfg.HTTP.Listen, err)
		}
		n.serve("httptunnel", func() error { return n.httpc.Serve(n.httpLn) })
	}
	if n.admin, err = startAdmin(n); err != nil {
		return err
	}
	log.Info("node started", "roles", n.cfg.Roles, "addrs", n.host.Addrs())
	return nil
}

func (n *Node) serve(name string, f func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := f(); err != nil && !errors.Is(err, proxy.ErrServerClosed) {
			n.log.Warn("front end stopped", "subsys", name, "err", err)
		}
	}()
}

// republish publishes a new advert after the mint rotated its keysets.
func (n *Node) republish(onion *circuit.OnionKey, exitPorts []discovery.PortRange, ks []*voucher.Keyset) {
	ad, err := n.advert(onion, exitPorts, ks)
	if err != nil {
		n.log.Error("advert with new keysets", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
	defer cancel()
	if err := n.disc.Publish(ctx, ad); err != nil {
		n.log.Warn("republish advert with new keysets", "err", err)
	}
}

// publishLoop retries the first publication with backoff until it succeeds
// or the node stops; after that discovery republishes on its own schedule.
func (n *Node) publishLoop(ad discovery.Advert) {
	defer n.wg.Done()
	wait := 500 * time.Millisecond
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(n.ctx, 30*time.Second)
		err := n.disc.Publish(ctx, ad)
		cancel()
		if err == nil {
			n.log.Info("advert published")
			return
		}
		n.log.Debug("advert not published yet", "err", err)
		wait = min(2*wait, 30*time.Second)
	}
}

func (n *Node) idleLoop() {
	defer n.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.pool.closeIdle(n.cfg.Circuit.IdleClose)
		}
	}
}

// Close stops the node: front ends first (no new work), then circuits,
// discovery and the host. Safe to call more than once.
func (n *Node) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	n.closed = true
	n.mu.Unlock()
	if n.cancel != nil {
		n.cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n.admin != nil {
		n.admin.close(ctx)
	}
	if n.socks != nil {
		n.socks.Shutdown(ctx)
	} else if n.socksLn != nil {
		n.socksLn.Close()
	}
	if n.httpc != nil {
		n.httpc.Shutdown(ctx)
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	if n.pool != nil {
		n.pool.closeAll()
	}
	var errs []error
	errs = append(errs, n.pay.close())
	if n.disc != nil {
		errs = append(errs, n.disc.Close())
	}
	if n.engine != nil {
		errs = append(errs, n.engine.Close())
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	n.wg.Wait()
	return errors.Join(errs...)
}

// ID is the node's libp2p peer ID.
func (n *Node) ID() peer.ID { return n.host.ID() }

// Host is the node's libp2p host (tests and devnet use it to connect nodes).
func (n *Node) Host() host.Host { return n.host }

// P2PAddrs are the node's listen addresses with /p2p/<id>, for bootstrap lists.
func (n *Node) P2PAddrs() []ma.Multiaddr {
	addrs, _ := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()})
	return addrs
}

// SOCKSAddr is the SOCKS listener's address, or nil when it is off.
func (n *Node) SOCKSAddr() net.Addr {
	if n.socksLn == nil {
		return nil
	}
	return n.socksLn.Addr()
}

// HTTPAddr is the HTTP CONNECT listener's address, or nil when it is off.
func (n *Node) HTTPAddr() net.Addr {
	if n.httpLn == nil {
		return nil
	}
	return n.httpLn.Addr()
}

// Circuits lists the client's open circuits.
func (n *Node) Circuits() []CircuitInfo {
	if n.pool == nil {
		return nil
	}
	return n.pool.snapshot()
}

// Discovery is the node's discovery service (for the admin API and tests).
func (n *Node) Discovery() *discovery.Service { return n.disc }

// Dial opens a stream to target (parsed by the front end, never resolved
// here) over the circuit of isolation key iso for target's port. If the
// circuit dies before the exit answers, nothing has reached the target yet,
// so the stream is retried once on a freshly built circuit.
func (n *Node) Dial(ctx context.Context, iso proxy.Isolation, target cell.Target) (net.Conn, error) {
	if n.pool == nil {
		return nil, errors.New("node: client role not enabled")
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		c, err := n.pool.get(ctx, iso, target.Port())
		if err != nil {
			n.log.Warn("no circuit for a stream", "err", err)
			return nil, err
		}
		s, err := c.Dial(ctx, cell.ServiceExit, target)
		if err == nil {
			n.reportOK(c)
			if pc, ok := n.paid.Load(c.ID()); ok {
				return &countingConn{Conn: s, pc: pc.(*paidCircuit)}, nil
			}
			return s, nil
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

// Resolve asks the exit of iso's circuit to resolve host (Tor's RESOLVE);
// Circuit.Resolve vets host with cell.CheckHost.
func (n *Node) Resolve(ctx context.Context, iso proxy.Isolation, host string) (netip.Addr, error) {
	if n.pool == nil {
		return netip.Addr{}, errors.New("node: client role not enabled")
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	defer cancel()
	c, err := n.pool.get(ctx, iso, 443)
	if err != nil {
		return netip.Addr{}, err
	}
	return c.Resolve(ctx, host)
}

// reportOK tells discovery that every hop of c carried a stream, raising
// their weight in path selection.
func (n *Node) reportOK(c *circuit.Circuit) {
	for _, h := range c.Path() {
		n.disc.Report(h.Peer, true)
	}
}

// buildCircuit selects a path through discovery and builds it. The build is
// bounded by the node's lifetime as well as the caller's ctx.
func (n *Node) buildCircuit(ctx context.Context, port uint16) (*circuit.Circuit, error) {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.BuildTimeout)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	var lastErr error
	var exclude []peer.ID
	for attempt := 0; attempt < 3; attempt++ {
		path, err := n.disc.SelectPath(ctx, discovery.PathRequest{
			Hops:        n.cfg.Circuit.Hops,
			Final:       discovery.RoleExit,
			Port:        port,
			MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
			Exclude:     exclude,
		})
		if err != nil {
			if len(n.disc.Known()) == 0 {
				return nil, fmt.Errorf("select path: %w (this node knows no other node: check discovery.bootstrap in %s)", err, filepath.Join(n.cfg.DataDir, ConfigFile))
			}
			return nil, fmt.Errorf("select path: %w", err)
		}
		hops := make([]circuit.HopInfo, len(path))
		for i, ad := range path {
			hops[i] = circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
		}
		c, err := n.engine.Build(ctx, hops)
		if err == nil {
			if n.pay != nil && n.pay.wallet != nil {
				for _, h := range hops {
					n.pay.wallet.Track(h.Peer) // automatic purchase keeps a balance here
				}
				if _, err := n.prepay(ctx, c, path); err != nil {
					c.Close()
					return nil, fmt.Errorf("prepay circuit: %w", err)
				}
			}
			return c, nil
		}
		lastErr = err
		// Blame only the hop that failed; its neighbours did nothing wrong.
		if be := (*circuit.BuildError)(nil); errors.As(err, &be) && be.Hop < len(hops) {
			n.disc.Report(hops[be.Hop].Peer, false)
			exclude = append(exclude, hops[be.Hop].Peer)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

// advert describes this node for discovery.
func (n *Node) advert(onion *circuit.OnionKey, exitPorts []discovery.PortRange, keysets []*voucher.Keyset) (discovery.Advert, error) {
	ad := discovery.Advert{
		Peer:     n.host.ID(),
		OnionKey: onion.Public(),
		Prices:   map[discovery.Role]uint64{},
		Addrs:    n.host.Addrs(),
	}
	if n.cfg.Has(RoleRelay) {
		ad.Roles = append(ad.Roles, discovery.RoleRelay)
		ad.Prices[discovery.RoleRelay] = n.cfg.Discovery.PriceSatPerMB[RoleRelay]
	}
	if n.cfg.Has(RoleExit) {
		ad.Roles = append(ad.Roles, discovery.RoleExit)
		ad.Prices[discovery.RoleExit] = n.cfg.Discovery.PriceSatPerMB[RoleExit]
		ad.ExitPorts = exitPorts
	}
	for _, s := range n.cfg.Discovery.Family {
		if id, err := peer.Decode(s); err == nil {
			ad.Family = append(ad.Family, id)
		}
	}
	if n.pay != nil && n.pay.mint != nil {
		ad.Payee = n.pay.lnd.Info().IdentityPubkey
		for _, k := range keysets {
			dk, err := keysetToAdvert(k)
			if err != nil {
				return discovery.Advert{}, fmt.Errorf("advert keyset: %w", err)
			}
			ad.Keysets = append(ad.Keysets, dk)
		}
	}
	return ad, nil
}

func bootstrapPeers(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for i, s := range addrs {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("discovery.bootstrap[%d]", i), "%v", err)
		}
		ai, err := peer.AddrInfoFromP2pAddr(a)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("discovery.bootstrap[%d]", i), "%v", err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// LoadOnionKey returns the node's circuit handshake key, creating it on
// first use (0600).
func LoadOnionKey(dataDir string) (*circuit.OnionKey, error) {
	raw, err := loadOrCreate(filepath.Join(dataDir, OnionKeyFile), func() ([]byte, error) {
		k, err := circuit.GenerateOnionKey()
		if err != nil {
			return nil, err
		}
		return k.Bytes(), nil
	})
	if err != nil {
		return nil, fmt.Errorf("onion key: %w", err)
	}
	k, err := circuit.ParseOnionKey(raw)
	if err != nil {
		return nil, fmt.Errorf("onion key %s is corrupt: %w", filepath.Join(dataDir, OnionKeyFile), err)
	}
	return k, nil
}

// Config returns the configuration the node runs with (defaults applied).
func (n *Node) Config() Config { return n.cfg }
