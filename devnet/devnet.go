package devnet

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/internal/tornet"
	"github.com/co-infuse/co-infuse/mempool"
	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// Options shapes a local network. Zero values take the defaults shown.
type Options struct {
	// Dir holds one data directory per node (Dir/relay1, Dir/exit1, ...),
	// each with its own config.yaml and keys. Required.
	Dir string
	// Relays and Exits are how many of each to run. Default 3 and 2.
	Relays, Exits int
	// SOCKSListen and HTTPListen are the client's front ends. Default
	// 127.0.0.1:9350 and 127.0.0.1:9380 (not Tor's 9050, so devnet runs
	// beside a local Tor).
	SOCKSListen, HTTPListen string
	// ControlListen, if set, runs the client's Tor-compatible control port
	// there (cookie auth, cookie in the client's data directory), for
	// bitcoind -torcontrol or lnd tor.control. Default "": off.
	ControlListen string
	// WebListen serves a demo page and test downloads on loopback, so that
	// a newcomer has something to fetch through the network. Default
	// 127.0.0.1:8088; "off" disables it.
	WebListen string
	// ExitsDefaultPolicy keeps the exits' default policy (refusing loopback).
	// Default false: devnet exits allow loopback targets, since loopback is
	// all these networks can reach.
	ExitsDefaultPolicy bool
	// Lightning runs a real regtest Lightning network (btcd and two LND,
	// see internal/regtest) beside the nodes: relays and exits sell
	// vouchers invoiced by one LND, the client buys them from the other.
	// The first run builds the daemons (minutes); each start mines and
	// opens a channel (about a minute). Default false.
	Lightning bool
	// Mempool is how many delivery nodes ("mempool1".."mempoolN", role
	// mempool) to run, each handing transactions to the harness's regtest
	// btcd; with it the client's bitcoind-compatible JSON-RPC port is on
	// (RPCListen). With Lightning the btcd is Lightning's; without, a btcd
	// is started alone (regtest.Options.ChainOnly), which the first run
	// builds (minutes). Default 0: no delivery nodes, no RPC port.
	Mempool int
	// RPCListen is the client's JSON-RPC port when Mempool > 0. Default
	// 127.0.0.1:18332 (bitcoind's regtest port is 18443).
	RPCListen string
	// Configure, if set, adjusts each node's config before it is written
	// and started; name is "relay1".."relayN", "exit1".."exitN",
	// "mempool1".."mempoolN" or "client". Tests use it to give exits different policies or to
	// shorten the client's circuit timers.
	Configure func(name string, cfg *node.Config)
	// SkipPurchase leaves the start-up purchase out (Lightning only): the
	// client's wallet then buys ahead in the background on its own.
	SkipPurchase bool
	// NodeOptions, if set, adds options to each node's node.New; name as
	// in Configure. Tests use it to observe what a node's mint or a
	// rendezvous point sees.
	NodeOptions func(name string) []node.Option
	// Progress receives one line per step. Default io.Discard.
	Progress io.Writer
	// Logger for every node. Default: warnings to stderr.
	Logger *slog.Logger
	// WebOnion publishes the demo web server as an onion service of the
	// client (port 80) once the network is up. Default false.
	WebOnion bool
	// Tor starts a private Tor network on loopback (internal/tornet,
	// under Dir/tornet: 3 authorities, 5 relays, 2 exits) before the
	// nodes, adds a node "torgw" with the relay and tor-gateway roles
	// whose managed tor joins it, and gives the client a managed tor
	// joining it too (dual publication). Devnet.TorNet is the network.
	// Needs Debian's tor and tor-gencert. Default false.
	Tor bool
}

// Devnet is a whole co-infuse network on loopback: relays, exits and one
// client, each a real libp2p host with its own data directory.
type Devnet struct {
	Nodes  []*node.Node // bootstrap relay first, client last
	Client *node.Node
	// WebAddr is the demo web server's address, or nil.
	WebAddr net.Addr
	// WebOnion is the onion address ("<56>.onion") under which the client
	// publishes the demo web server on port 80, or "" without one.
	WebOnion string

	// LN is the regtest Lightning network, or nil.
	LN *regtest.Network
	// Chain is the regtest btcd behind the delivery nodes: LN's, or one
	// started alone; nil without either.
	Chain *regtest.Network

	web   *http.Server
	webWG sync.WaitGroup
	tor   *tornet.Network // Options.Tor; nil without
}

// TorNet is the private Tor network of Options.Tor, or nil. Tests start
// Tor clients in it (Client) to play the Tor world.
func (d *Devnet) TorNet() *tornet.Network { return d.tor }

// StartDevnet starts the network and waits until the client has discovered
// every relay and exit. On error it stops what it started.
func Start(ctx context.Context, o Options) (_ *Devnet, err error) {
	if o.Dir == "" {
		return nil, errors.New("devnet: no directory")
	}
	if o.Relays == 0 {
		o.Relays = 3
	}
	if o.Exits == 0 {
		o.Exits = 2
	}
	if o.SOCKSListen == "" {
		o.SOCKSListen = "127.0.0.1:9350"
	}
	if o.HTTPListen == "" {
		o.HTTPListen = "127.0.0.1:9380"
	}
	if o.WebListen == "" {
		o.WebListen = "127.0.0.1:8088"
	}
	if o.RPCListen == "" {
		o.RPCListen = "127.0.0.1:18332"
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = node.NewLogger(os.Stderr, "warn")
	}
	d := &Devnet{}
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if o.WebListen != "off" {
		if err := d.startWeb(o.WebListen); err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Progress, "demo web server on http://%s/\n", d.WebAddr)
	}

	if o.Lightning {
		fmt.Fprintln(o.Progress, "starting a regtest Lightning network (btcd + 2 lnd)...")
		// btcd starts a new regtest chain every time, so lnd wallets from
		// an earlier run would wait for a chain that is gone: start clean.
		lnDir := filepath.Join(o.Dir, "regtest")
		if err := os.RemoveAll(lnDir); err != nil {
			return nil, fmt.Errorf("devnet lightning: clear %s: %w", lnDir, err)
		}
		d.LN, err = regtest.Start(ctx, regtest.Options{Dir: lnDir, Progress: o.Progress, Logger: o.Logger})
		if err != nil {
			return nil, fmt.Errorf("devnet lightning: %w", err)
		}
		d.Chain = d.LN
	} else if o.Mempool > 0 {
		fmt.Fprintln(o.Progress, "starting a regtest btcd for the delivery nodes...")
		chainDir := filepath.Join(o.Dir, "regtest")
		if err := os.RemoveAll(chainDir); err != nil {
			return nil, fmt.Errorf("devnet mempool: clear %s: %w", chainDir, err)
		}
		d.Chain, err = regtest.Start(ctx, regtest.Options{Dir: chainDir, Progress: o.Progress, Logger: o.Logger, ChainOnly: true})
		if err != nil {
			return nil, fmt.Errorf("devnet mempool: %w", err)
		}
	}

	if o.Tor {
		fmt.Fprintln(o.Progress, "starting a private Tor network (3 authorities, 5 relays; about a minute)...")
		torDir := filepath.Join(o.Dir, "tornet")
		if err := os.RemoveAll(torDir); err != nil {
			return nil, fmt.Errorf("devnet tor: clear %s: %w", torDir, err)
		}
		start := time.Now()
		d.tor, err = tornet.Start(ctx, torDir, tornet.Options{}, o.Logger.With("devnet", "tornet"))
		if err != nil {
			return nil, fmt.Errorf("devnet tor: %w", err)
		}
		fmt.Fprintf(o.Progress, "private Tor network up in %s\n", time.Since(start).Round(time.Millisecond))
	}

	type spec struct {
		name  string
		roles []node.Role
	}
	var specs []spec
	for i := 1; i <= o.Relays; i++ {
		// Relays are also rendezvous points, intro points and HSDirs, so
		// onion services work on every devnet.
		specs = append(specs, spec{"relay" + strconv.Itoa(i), []node.Role{node.RoleRelay, node.RoleRendezvous}})
	}
	for i := 1; i <= o.Exits; i++ {
		specs = append(specs, spec{"exit" + strconv.Itoa(i), []node.Role{node.RoleExit}})
	}
	for i := 1; i <= o.Mempool; i++ {
		specs = append(specs, spec{"mempool" + strconv.Itoa(i), []node.Role{node.RoleMempool}})
	}
	if o.Tor {
		specs = append(specs, spec{"torgw", []node.Role{node.RoleRelay, node.RoleTorGateway}})
	}
	specs = append(specs, spec{"client", []node.Role{node.RoleClient}})

	var bootstrap []string
	for i, s := range specs {
		cfg := node.DefaultConfig(filepath.Join(o.Dir, s.name))
		cfg.Roles = s.roles
		off := false
		cfg.SOCKS.Enabled = &off
		cfg.Discovery.AllowSameNetwork = true
		cfg.Network.AllowPrivatePeers = true
		// A loopback network of its own: the private DHT joined only
		// through the first node, never the public IPFS DHT that
		// DefaultConfig chooses.
		cfg.Discovery.Mode = discovery.ModePrivate
		cfg.Discovery.Bootstrap = bootstrap
		cfg.Log.Level = "warn"
		if s.name == "client" {
			on := true
			cfg.SOCKS.Enabled = &on
			cfg.SOCKS.Listen = o.SOCKSListen
			cfg.HTTP.Enabled = true
			cfg.HTTP.Listen = o.HTTPListen
			if o.Mempool > 0 {
				cfg.Mempool.RPC.Enabled = true
				cfg.Mempool.RPC.Listen = o.RPCListen
			}
			// The demo onion service asks a small proof of work of each
			// introduction (2^8 hashes), so every devnet exercises it.
			cfg.Rendezvous.PoWEffort = 8
			if o.ControlListen != "" {
				cfg.Control.Enabled = true
				cfg.Control.Listen = o.ControlListen
			}
		}
		if cfg.Has(node.RoleMempool) {
			host, user, pass, cert := d.Chain.BtcdRPC()
			cfg.Mempool.Backend = mempool.BackendConfig{Host: host, User: user, Pass: pass, CertPath: cert}
		}
		if d.LN != nil {
			cfg.Payments.Enabled = true
			ln := d.LN.Bob() // the nodes' side
			if s.name == "client" {
				ln = d.LN.Alice() // the user's side
			}
			cfg.LND = ln.LightningConfig(nil)
			cfg.LND.Logger = nil
			if s.name == "client" {
				// The wallet keeps a balance at every node it uses;
				// the default daily budget covers about five nodes.
				cfg.Payments.DailyBudgetSat = max(10_000, 3_000*uint64(len(specs)-1))
			}
		}
		if d.tor != nil && (cfg.Has(node.RoleTorGateway) || s.name == "client") {
			cfg.Tor.Enabled = true
			cfg.Tor.Torrc = d.tor.Torrc()
		}
		if cfg.Has(node.RoleExit) && !o.ExitsDefaultPolicy {
			cfg.Exit.AllowPrivateRanges = []string{"loopback"}
		}
		if o.Configure != nil {
			o.Configure(s.name, &cfg)
		}
		cfg.ApplyDefaults()
		if err := node.WriteConfig(cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		opts := []node.Option{node.WithLogger(o.Logger.With("node", s.name))}
		if o.NodeOptions != nil {
			opts = append(opts, o.NodeOptions(s.name)...)
		}
		n, err := node.New(cfg, opts...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if err := n.Start(ctx); err != nil {
			return nil, fmt.Errorf("start %s: %w", s.name, err)
		}
		d.Nodes = append(d.Nodes, n)
		fmt.Fprintf(o.Progress, "[%d/%d] %-7s %s\n", i+1, len(specs), s.name, n.ID())
		if a := n.ControlAddr(); a != nil {
			fmt.Fprintf(o.Progress, "        control port on %s, cookie %s\n", a, n.ControlCookie())
		}
		if i == 0 {
			for _, a := range n.P2PAddrs() {
				bootstrap = append(bootstrap, a.String())
			}
		}
	}
	d.Client = d.Nodes[len(d.Nodes)-1]
	if d.tor != nil {
		fmt.Fprintln(o.Progress, "waiting for the nodes' tors to bootstrap in the private Tor network...")
		for _, n := range d.Nodes {
			if t := n.Tor(); t != nil {
				if err := t.WaitBootstrapped(ctx); err != nil {
					return nil, fmt.Errorf("devnet tor: node %s: %w", n.ID(), err)
				}
			}
		}
	}
	fmt.Fprintf(o.Progress, "waiting for the client to discover %d relays and %d exits...\n", o.Relays, o.Exits)
	if err := d.waitDiscovered(ctx, o.Relays, o.Exits); err != nil {
		return nil, err
	}
	if o.Mempool > 0 {
		if err := d.waitDelivery(ctx, o.Mempool); err != nil {
			return nil, err
		}
	}
	if d.WebAddr != nil && o.WebOnion {
		if err := d.publishWeb(ctx, o.Progress); err != nil {
			return nil, err
		}
	}
	if d.LN != nil && !o.SkipPurchase {
		for _, n := range d.Nodes[:len(d.Nodes)-1] {
			start := time.Now()
			p, err := d.Client.Buy(ctx, n.ID(), PurchaseSat)
			if err != nil {
				return nil, fmt.Errorf("devnet: buying vouchers from %s over Lightning: %w", n.ID(), err)
			}
			fmt.Fprintf(o.Progress, "bought %d sats of vouchers from %s over Lightning in %s\n", p.AmountSat, n.ID(), time.Since(start).Round(time.Millisecond))
		}
	}
	return d, nil
}

// PurchaseSat is what a Lightning devnet's client buys from each node
// at start.
const PurchaseSat = 100

// waitDiscovered polls the client's discovery until it sees enough nodes.
func (d *Devnet) waitDiscovered(ctx context.Context, relays, exits int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	disc := d.Client.Discovery()
	for {
		r, err1 := disc.Find(ctx, discovery.RoleRelay, relays)
		e, err2 := disc.Find(ctx, discovery.RoleExit, exits)
		if err1 == nil && err2 == nil && len(r) >= relays && len(e) >= exits {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devnet: client found %d/%d relays and %d/%d exits before timing out (last errors: %v, %v)", len(r), relays, len(e), exits, err1, err2)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// waitDelivery polls the client's discovery until it sees n delivery nodes.
func (d *Devnet) waitDelivery(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		found, err := d.Client.Discovery().Find(ctx, discovery.RoleMempool, n)
		if err == nil && len(found) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("devnet: client found %d/%d delivery nodes before timing out (last error: %v)", len(found), n, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Node returns the node with peer ID id, or nil.
func (d *Devnet) Node(id string) *node.Node {
	for _, n := range d.Nodes {
		if n.ID().String() == id {
			return n
		}
	}
	return nil
}

// Close stops every node (client first) and the web server.
func (d *Devnet) Close() error {
	var errs []error
	for i := len(d.Nodes) - 1; i >= 0; i-- {
		errs = append(errs, d.Nodes[i].Close())
	}
	if d.Chain != nil {
		errs = append(errs, d.Chain.Close()) // LN's too, when it is LN
	}
	if d.tor != nil {
		errs = append(errs, d.tor.Close()) // after the nodes whose tors use it
	}
	if d.web != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		d.web.Shutdown(ctx)
		cancel()
		d.webWG.Wait()
	}
	return errors.Join(errs...)
}

func (d *Devnet) startWeb(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("demo web server on %s: %w (pass --web to choose another address)", addr, err)
	}
	d.WebAddr = ln.Addr()
	d.web = &http.Server{Handler: DemoHandler(), ReadHeaderTimeout: 10 * time.Second}
	d.webWG.Add(1)
	go func() {
		defer d.webWG.Done()
		d.web.Serve(ln)
	}()
	return nil
}

// publishWeb publishes the demo web server as an onion service of the
// client, port 80, and waits until its descriptor is stored.
func (d *Devnet) publishWeb(ctx context.Context, progress io.Writer) error {
	key, err := rendezvous.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	m := d.Client.Rendezvous()
	if m == nil {
		return errors.New("devnet: the client has no onion-service manager")
	}
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	info, err := m.Publish(pctx, key, []rendezvous.Port{{Virtual: 80, Target: d.WebAddr.String()}})
	if err != nil {
		return fmt.Errorf("devnet: publish the demo web server: %w", err)
	}
	if !info.Published {
		return errors.New("devnet: the demo web server's descriptor was not stored within 60 s")
	}
	d.WebOnion = info.Address
	fmt.Fprintf(progress, "demo web server as an onion service: http://%s/\n", info.Address)
	return nil
}
