package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
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
	"github.com/co-infuse/co-infuse/circuit/pool"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/mempool"
	"github.com/co-infuse/co-infuse/payment"
	"github.com/co-infuse/co-infuse/proxy"
	"github.com/co-infuse/co-infuse/rendezvous"
	"github.com/co-infuse/co-infuse/voucher/mint"
)

// Node is one running co-infuse node. Create it with New, then Start; Close
// stops everything it started and waits for it.
type Node struct {
	cfg  Config
	log  *slog.Logger
	priv crypto.PrivKey // relays and exits: identity.key, set by New; client only: per run, set by Start

	// Set by Start, read-only afterwards. Nil fields are parts this
	// node's roles and settings leave out.
	host   host.Host
	onion  *circuit.OnionKey // relays and exits
	engine *circuit.Engine
	mux    *circuit.Mux // the last hop's destinations (destinations.go)
	dests  []io.Closer  // closed after the engine
	ledger *payment.Ledger
	disc   *discovery.Service
	socks  *proxy.SOCKSServer
	httpc  *proxy.HTTPConnectServer
	admin  *adminServer
	pool   *pool.Pool
	gwPool *pool.Pool // the client's tor-gateway circuits (torgateway.go)
	// payPtr holds the LND client, mint and wallet (nil when payments are
	// off, or while a client waits for LND: paywait.go); payerPtr the
	// client's prepay/top-up schedule, with a wallet. Set once, by Start
	// or by the wait's goroutine; read through pay() and payer().
	payPtr   atomic.Pointer[payments]
	payerPtr atomic.Pointer[payment.Client]
	// payWait is the state of waiting for LND (paywait.go).
	payWait payWait
	// fatal receives the one error after which the node cannot go on
	// (Fatal); buffered 1.
	fatal chan error
	// delivery is the mempool role's server (nil without the role);
	// mempool is the client's mempool sender (nil unless mempool.rpc is
	// enabled).
	delivery *mempool.Server
	mempool  *mempool.Client
	// deliveryPool holds the mempool client's pre-built circuits.
	deliveryPool deliveryPool
	rpc          *proxy.RPCServer // the JSON-RPC port; nil when off
	rpcLn        net.Listener
	socksLn      net.Listener
	httpLn       net.Listener
	ctl          *controlPort // control.go; nil when the control port is off
	// tor is the managed tor of the tor section (tor.go); nil when off.
	// Started before the destinations and the control port, closed after
	// them.
	tor *torproc.Tor
	// torgw is the tor-gateway role's service (torgateway.go); nil
	// without the role.
	torgw *exit.TorGateway

	// hs is the onion-service manager (rendezvous.go); nil without the
	// client role. hsObserve is WithRendezvousObserver's function, or nil.
	hs        *rendezvous.Manager
	hsObserve RendezvousObserver
	// beginHook is WithBeginHook's function, or nil.
	beginHook func(circuit.BeginFunc) circuit.BeginFunc

	// exitPorts are the ports the exit policy accepts, for the advert.
	exitPorts []discovery.PortRange
	// advertised is set once the first advert has been built, so that
	// keyset rotations republish it.
	advertised atomic.Bool

	// paid maps a client circuit's ID to its payment ledger
	// (*payment.Circuit) while the circuit lives.
	paid sync.Map
	// now is the wallet's clock (WithClock); nil means time.Now.
	now func() time.Time
	// mintObserve is WithMintObserver's func, or nil.
	mintObserve func(mint.Via)
	// totals are closed client circuits' figures per node (status).
	totals hopTotals

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

// WithBeginHook puts f's function in front of the last hop's service mux:
// every BEGIN this node serves as a last hop goes to f(next), which may
// answer it itself or pass it to next. For tests that need a hostile node
// (an HSDir that serves forged descriptors, an intro point that refuses);
// a real node has no use for it.
func WithBeginHook(f func(next circuit.BeginFunc) circuit.BeginFunc) Option {
	return func(n *Node) error { n.beginHook = f; return nil }
}

// New checks cfg and, for a relay or exit, loads (or creates) the node's
// persistent identity; a client-only node gets a fresh one in Start
// (Config.PersistentIdentity). It starts nothing.
func New(cfg Config, opts ...Option) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	n := &Node{cfg: cfg, fatal: make(chan error, 1)}
	if cfg.PersistentIdentity() {
		var err error
		if n.priv, err = LoadIdentity(cfg.DataDir); err != nil {
			return nil, err
		}
	}
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

// Start brings the node up in dependency order: host, payments, the last
// hop's destinations, circuit engine, discovery and advert, the client's
// circuit pool, front ends, admin socket. On error everything already
// started is stopped.
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

	if n.priv == nil { // client only: a peer ID for this run, never written
		if n.priv, err = EphemeralIdentity(); err != nil {
			return err
		}
	}
	if n.host, err = newHost(n.priv, n.cfg.Network, n.relays()); err != nil {
		return err
	}
	n.log = n.log.With("peer", n.host.ID().String())
	if n.relays() {
		if n.onion, err = LoadOnionKey(n.cfg.DataDir); err != nil {
			return err
		}
	}
	waitLND := n.waitsForLND()
	if waitLND {
		n.payWait.start("waiting for lnd") // before any front end opens
	}
	if n.cfg.Payments.Enabled && !waitLND {
		p, err := n.startPayments(ctx)
		if err != nil {
			return err
		}
		n.payPtr.Store(p)
	}
	if err = n.startTor(ctx); err != nil {
		return err
	}
	if err = n.startEngine(); err != nil {
		return err
	}
	if err = n.startDiscovery(ctx); err != nil {
		return err
	}
	if err = n.startWallet(); err != nil {
		return err
	}
	if n.cfg.Has(RoleClient) {
		if err = n.startClient(); err != nil {
			return err
		}
		if n.cfg.Mempool.RPC.Enabled {
			if err = n.startMempoolClient(); err != nil {
				return err
			}
		}
	}
	if err = n.startFrontEnds(); err != nil {
		return err
	}
	if err = n.startControl(); err != nil {
		return err
	}
	if n.admin, err = startAdmin(n); err != nil {
		return err
	}
	if waitLND {
		n.startPaymentsLater() // paywait.go
	}
	n.log.Info("node started", "roles", n.cfg.Roles, "addrs", n.host.Addrs())
	return nil
}

// pay is the node's voucher machinery, nil when payments are off or not
// ready yet.
func (n *Node) pay() *payments { return n.payPtr.Load() }

// payer is the client's payment schedule, nil without a wallet (or
// before payments are ready).
func (n *Node) payer() *payment.Client { return n.payerPtr.Load() }

// Fatal delivers the error after which the running node cannot go on
// (today: LND did not become usable within lnd.wait_for_credentials); its
// text is one line naming what to fix. The caller should Close the node
// and exit. Nothing is sent while the node runs normally.
func (n *Node) Fatal() <-chan error { return n.fatal }

// frontEndDrain is how long Close lets front-end connections finish.
const frontEndDrain = 2 * time.Second

// relays reports whether the node carries other people's circuits.
func (n *Node) relays() bool {
	return n.cfg.Has(RoleRelay) || n.cfg.Has(RoleExit) || n.cfg.Has(RoleMempool) || n.cfg.Has(RoleRendezvous) || n.cfg.Has(RoleTorGateway)
}

// startEngine registers the destinations this node's roles offer with the
// service mux and starts the circuit engine. A relay meters every session
// in a payment ledger: a paid hop refuses sessions that stop paying, an
// unpaid one only counts (for status).
func (n *Node) startEngine() error {
	ecfg := circuit.Config{Host: n.host, OnionKey: n.onion, Logger: n.log, Limits: n.cfg.Limits.circuitLimits()}
	if n.cfg.Has(RoleTorGateway) && ecfg.Limits.BeginTimeout < gatewayBeginTimeout {
		// An onion-service connection through tor outlasts the default
		// BEGIN deadline (the gateway bounds its dials itself).
		ecfg.Limits.BeginTimeout = gatewayBeginTimeout
	}
	if n.relays() {
		n.mux = circuit.NewMux()
		for _, d := range destinations() {
			if !d.enabled(n.cfg) {
				continue
			}
			c, err := d.start(n, n.mux)
			if err != nil {
				return err
			}
			if c != nil {
				n.dests = append(n.dests, c)
			}
		}
		lcfg := payment.LedgerConfig{Redeem: errNoMint, Logger: n.log}
		if n.pay() != nil && n.pay().mint != nil {
			lcfg.Redeem = n.pay().mint.RedeemPayload
			lcfg.PriceSatPerMB, lcfg.ServicePrices = n.cfg.ledgerPrices()
		}
		var err error
		if n.ledger, err = payment.NewLedger(lcfg); err != nil {
			return fmt.Errorf("payment ledger: %w", err)
		}
		n.mux.Observe(func(req circuit.BeginRequest) { n.ledger.NoteService(req.Cookie, req.Service) })
		ecfg.Begin, ecfg.Resolve = n.mux.Begin, n.mux.Resolve
		if n.beginHook != nil {
			ecfg.Begin = n.beginHook(n.mux.Begin)
		}
		ecfg.Account, ecfg.SessionClosed = n.ledger.Account, n.ledger.Closed
		if n.pay() != nil && n.pay().mint != nil {
			// A paid hop: circuits pay in their handshakes (PROTOCOL.md
			// §4.1) or are mint-only (§4.5), then top up.
			ecfg.Prepay, ecfg.TopUp = n.ledger.Prepay, n.ledger.TopUp
		}
	}
	var err error
	if n.engine, err = circuit.New(ecfg); err != nil {
		return fmt.Errorf("circuit engine: %w", err)
	}
	if err = n.engine.Start(); err != nil {
		return fmt.Errorf("circuit engine: %w", err)
	}
	return nil
}

// errNoMint is a free hop's Redeem: it sells nothing, so a TOPUP is refused.
func errNoMint(context.Context, []byte) (uint64, error) {
	return 0, errors.New("this node sells no vouchers (payments are off)")
}

// startDiscovery joins the DHT and, for relays and exits, publishes the
// advert (retrying in the background while the network is empty).
func (n *Node) startDiscovery(ctx context.Context) error {
	boot, err := bootstrapPeers(n.cfg.Discovery.Bootstrap)
	if err != nil {
		return err
	}
	dcfg := discovery.Config{
		Mode:             n.cfg.Discovery.Mode,
		Bootstrap:        boot,
		CacheDir:         filepath.Join(n.cfg.DataDir, "discovery"),
		AllowSameNetwork: n.cfg.Discovery.AllowSameNetwork,
		AllowPrivate:     n.cfg.Network.AllowPrivatePeers,
		DHTServer:        n.relays(),
		Logger:           n.log,
	}
	n.stakeFuncs(&dcfg)
	n.disc, err = discovery.New(n.host, n.priv, dcfg)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if err = n.disc.Start(ctx); err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	if n.relays() {
		return n.publishFirst(ctx)
	}
	return nil
}

// startFrontEnds opens the SOCKS5 and HTTP CONNECT ports and hands them the
// client's Dial and Resolve.
func (n *Node) startFrontEnds() (err error) {
	pcfg := proxy.Config{Dial: n.Dial, Resolve: n.Resolve, Logger: n.log}
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
	if n.mempool != nil {
		if err := n.startRPC(); err != nil {
			return err
		}
	}
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

// Close stops the node in the reverse order of Start: first it stops taking
// work (admin socket, front ends, the client's pool), then it closes the
// circuit engine and waits for its goroutines, then the destinations, the
// payment schedule, mint and wallet, discovery and the host. Safe to call
// more than once.
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
	var errs []error
	if n.admin != nil {
		n.admin.close(ctx)
	}
	// Front ends get a short drain; connections still open after it are
	// cut (their circuits close next anyway), which is not an error.
	drain, cancelDrain := context.WithTimeout(ctx, frontEndDrain)
	defer cancelDrain()
	if n.socks != nil {
		if n.socks.Shutdown(drain) != nil {
			n.log.Info("closed SOCKS connections still open at shutdown")
		}
	} else if n.socksLn != nil {
		n.socksLn.Close()
	}
	if n.httpc != nil {
		if n.httpc.Shutdown(drain) != nil {
			n.log.Info("closed HTTP CONNECT connections still open at shutdown")
		}
	} else if n.httpLn != nil {
		n.httpLn.Close()
	}
	n.closeControl(drain) // its services go before the Manager does
	if n.rpc != nil {
		if n.rpc.Shutdown(drain) != nil {
			n.log.Info("closed JSON-RPC connections still open at shutdown")
		}
	} else if n.rpcLn != nil {
		n.rpcLn.Close()
	}
	if n.mempool != nil {
		errs = append(errs, n.mempool.Close()) // rounds in flight end; the outbox stays on disk
		n.closeDeliveryPool()
	}
	if n.pool != nil {
		errs = append(errs, n.pool.Close())
	}
	if n.gwPool != nil {
		errs = append(errs, n.gwPool.Close())
	}
	if n.engine != nil {
		errs = append(errs, n.engine.Close())
	}
	if n.mux != nil {
		errs = append(errs, n.mux.Close())
	}
	for _, d := range n.dests {
		errs = append(errs, d.Close())
	}
	if p := n.payer(); p != nil {
		p.Close()
	}
	errs = append(errs, n.closeTor()) // after the destinations and control port that use it
	n.wg.Wait()                       // every goroutine of ours, before the stores they use close
	errs = append(errs, n.pay().close())
	if n.disc != nil {
		errs = append(errs, n.disc.Close())
	}
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
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

// Discovery is the node's discovery service (for the admin API and tests).
func (n *Node) Discovery() *discovery.Service { return n.disc }

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
