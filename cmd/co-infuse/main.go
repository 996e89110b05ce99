// Command co-infuse runs a co-infuse node: a paid onion-routing network that
// bitcoind, lnd and curl reach through a Tor-compatible SOCKS5 port.
//
//	co-infuse init        [--datadir D] [--roles client,relay,exit] [--force]
//	co-infuse run         [--datadir D] [--config FILE]
//	co-infuse devnet      [--datadir D] [--relays N] [--exits N] [--lightning=false] [--mempool N] ...
//	co-infuse status      [--datadir D] [--json]
//	co-infuse peers       [--datadir D] [--json]
//	co-infuse wallet      [--datadir D] [--json]
//	co-infuse wallet buy  [--datadir D] --node ID --sats N
//	co-infuse demo-web    [--listen A]
//	co-infuse version     [--datadir D]
//
// status, peers and wallet ask the node running on --datadir through its
// admin socket. --datadir defaults to $CO_INFUSE_DATADIR, else ~/.co-infuse.
// Every command and subcommand prints its usage for -h, --help or help, and
// exits 0. Exit codes (one line on stderr says what to do):
//
//	0  success
//	1  failure while running (or a status, peers or wallet that got no answer)
//	2  unknown command, flag or argument (usage on stderr)
//	3  configuration: config.yaml, a CO_INFUSE_ variable, or a file it names
//	   (LND's TLS cert or macaroon) is wrong; the line names it
//	4  start: the node could not start (a port already taken, LND
//	   unreachable or refusing)
//
// The command only turns flags, YAML and signals into calls on packages
// node and devnet.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/devnet"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/node"
)

func main() {
	os.Exit(cli(os.Args[1:], os.Stdout, os.Stderr))
}

// cli runs the command args names and returns the process's exit code: 0
// for success and for help, 2 for a usage error (usage already on stderr),
// 1 for any other failure, which it reports as one line on stderr.
func cli(args []string, stdout, stderr io.Writer) int {
	err := run(args, stdout, stderr)
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "co-infuse:", err)
	if errors.As(err, new(usageError)) {
		return 2
	}
	if errors.Is(err, node.ErrConfig) {
		return exitConfig
	}
	var se startError
	if errors.As(err, &se) {
		return exitStart
	}
	return 1
}

// Exit codes beyond 0, 1 and 2 (see the package comment).
const (
	exitConfig = 3
	exitStart  = 4
)

// startError is a failure to start a node whose config was fine.
type startError struct{ error }

func (e startError) Unwrap() error { return e.error }

// usageError is a command line the command does not understand; its usage
// has been printed to stderr.
type usageError struct{ error }

func (e usageError) Unwrap() error { return e.error }

const usage = `usage: co-infuse <command> [flags]

commands:
  init     write a commented config.yaml (and a relay's keys) into the data dir
  run      start the node the config describes
  devnet   run a whole local network on loopback (3 relays, 2 exits, a client)
  status   show what a running node does: circuits, sats paid per hop,
           wallet, sessions carried (--json for scripts and health checks)
  peers    list the nodes a running node knows (roles, prices, last result)
  wallet   show voucher balances, budget use and recent purchases
    buy    buy vouchers from a node by hand
  demo-web serve devnet's demo site (/, /bytes/N) for container networks
  version  print the version
  help     print this, or 'help <command>' for a command's flags

Every command takes --datadir (default $CO_INFUSE_DATADIR, else ~/.co-infuse). Run 'co-infuse <command> -h' for its flags.
`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "init":
		return cmdInit(rest, stdout, stderr)
	case "run":
		return cmdRun(rest, stdout, stderr)
	case "devnet":
		return cmdDevnet(rest, stdout, stderr)
	case "status":
		return cmdStatus(rest, stdout, stderr)
	case "peers":
		return cmdPeers(rest, stdout, stderr)
	case "wallet":
		return cmdWallet(rest, stdout, stderr)
	case "demo-web":
		return cmdDemoWeb(rest, stdout, stderr)
	case "version", "--version", "-version":
		fs, _ := newFlags("version", aboutVersion) // --datadir accepted, unused
		if err := parseFlags(fs, rest, stdout, stderr); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "co-infuse", node.Version)
		return nil
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") && rest[0] != "help" {
			// help <command> [subcommand]: that command's own usage.
			return run(append(slices.Clone(rest), "-h"), stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return flag.ErrHelp
	default:
		fmt.Fprint(stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

func defaultDataDir() string {
	if d := os.Getenv(node.EnvDataDir); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".co-infuse"
	}
	return filepath.Join(home, ".co-infuse")
}

// Each command's usage: synopsis, what it does, and (printed after this)
// its flags.
const (
	aboutInit = `usage: co-infuse init [--datadir D] [--roles client,relay,exit] [--force]

Write a commented config.yaml into the data directory and, for a relay or
exit, its identity and onion keys. Keys that exist are kept. A client-only
node has no permanent identity: it makes a new peer ID each run and writes
no key (an identity.key already there is left alone and not used).
`
	aboutRun = `usage: co-infuse run [--datadir D] [--config FILE]

Start the node config.yaml describes and run until interrupted (SIGINT,
SIGTERM). CO_INFUSE_* environment variables override the file, and without
a file configure the node alone (docker/README.md lists them). While it
runs, 'co-infuse status' shows what it does. Exits 3 for a bad config, 4 when
the node cannot start (a port taken, LND unreachable).
`
	aboutDemoWeb = `usage: co-infuse demo-web [--listen A]

Serve devnet's demo site: "/" says hello, "/bytes/N" streams N reproducible
bytes. A download target for container networks (docker/compose.devnet.yml).
`
	aboutDevnet = `usage: co-infuse devnet [--datadir D] [flags]

Run a whole local network on loopback: relays, exits and a client with SOCKS5
and HTTP CONNECT ports, a demo web server, and (by default) a regtest
Lightning network that pays for the traffic. Ctrl-C stops it.
`
	aboutStatus = `usage: co-infuse status [--datadir D] [--json]

Ask the node running on the data directory what it is doing: its circuits
with the bytes and sats paid at each hop, its wallet and budget, and for a
relay or exit the sessions, bytes and sats it carried by role. Exits 0 when
the node answers, 1 with one line saying what to do when it does not.
--json prints the node's status object (schema version in "version").
`
	aboutPeers = `usage: co-infuse peers [--datadir D] [--json]

List the nodes the running node knows: roles, prices, Lightning stake,
selection weight, the chance (in percent) that one guard, middle or exit pick
lands on each, when first seen and how circuits through them went.
`
	aboutWallet = `usage: co-infuse wallet [--datadir D] [--json]
       co-infuse wallet buy [--datadir D] --node ID --sats N

Show the running node's voucher balances per node, its budget use and recent
purchases.

subcommands:
  buy    buy vouchers from a node by hand over Lightning
`
	aboutWalletBuy = `usage: co-infuse wallet buy [--datadir D] --node ID --sats N

Buy N sats of vouchers from node ID (see 'co-infuse peers') over Lightning,
through the running node's wallet, and print the purchase.
`
	aboutVersion = `usage: co-infuse version

Print the version.
`
)

// newFlags returns the flag set of command name with the --datadir flag
// every command takes. about is the usage text printed above the flags.
func newFlags(name, about string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("co-infuse "+name, flag.ContinueOnError)
	// parseFlags prints usage and errors itself, to the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, about)
		fmt.Fprintln(w, "\nflags:")
		fs.PrintDefaults()
	}
	dd := fs.String("datadir", defaultDataDir(), "data directory (config.yaml, keys, stores)")
	return fs, dd
}

// parseFlags parses args into fs. For -h, --help or a first argument
// "help" it prints the usage to stdout and returns flag.ErrHelp (exit 0);
// for an unknown flag or any argument left over it prints the usage to
// stderr and returns a usageError (exit 2).
func parseFlags(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) error {
	err := fs.Parse(args)
	if err == nil && fs.NArg() > 0 {
		if fs.Arg(0) == "help" {
			err = flag.ErrHelp
		} else {
			err = fmt.Errorf("unexpected argument %q", fs.Arg(0))
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		fs.Usage()
		return flag.ErrHelp
	default:
		fs.SetOutput(stderr)
		fs.Usage()
		fs.SetOutput(io.Discard)
		return usageError{fmt.Errorf("%s: %w", strings.TrimPrefix(fs.Name(), "co-infuse "), err)}
	}
}

func cmdInit(args []string, stdout, stderr io.Writer) error {
	fs, dd := newFlags("init", aboutInit)
	roles := fs.String("roles", "client", "comma-separated roles: client, relay, exit")
	force := fs.Bool("force", false, "overwrite an existing config.yaml (keys are kept)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	cfg := node.DefaultConfig(*dd)
	cfg.Roles = nil
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			cfg.Roles = append(cfg.Roles, node.Role(r))
		}
	}
	on := cfg.Has(node.RoleClient)
	cfg.SOCKS.Enabled = &on
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	path := filepath.Join(*dd, node.ConfigFile)
	if _, err := os.Stat(path); err == nil && !*force {
		return fmt.Errorf("%s exists; edit it, or pass --force to replace it", path)
	}
	if err := os.MkdirAll(*dd, 0o700); err != nil {
		return err
	}
	raw, err := node.RenderConfig(cfg)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s\n", path)
	if cfg.PersistentIdentity() {
		id, err := node.LoadIdentity(*dd)
		if err != nil {
			return err
		}
		if _, err := node.LoadOnionKey(*dd); err != nil {
			return err
		}
		pid, err := peerIDOf(id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "peer id %s\n", pid)
	} else {
		fmt.Fprintf(stdout, "peer id: new each run (a client-only node keeps no identity; `co-infuse status` shows this run's)\n")
		if _, err := os.Stat(filepath.Join(*dd, node.IdentityKeyFile)); err == nil {
			fmt.Fprintf(stdout, "%s is left in place and not used while the node is client-only\n", node.IdentityKeyFile)
		}
	}
	fmt.Fprintf(stdout, "discovery: the public IPFS DHT (mode %s) through its public bootstrap peers; for a network of your own set discovery.mode: %s and discovery.bootstrap\n", cfg.Discovery.Mode, discovery.ModePrivate)
	if cfg.Has(node.RoleRelay) || cfg.Has(node.RoleExit) {
		fmt.Fprintf(stdout, "relays and exits must be reachable: put a public address in network.listen or network.announce\n")
	}
	fmt.Fprintf(stdout, "next: `co-infuse run --datadir %s`\n", *dd)
	return nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func cmdRun(args []string, stdout, stderr io.Writer) error {
	fs, dd := newFlags("run", aboutRun)
	config := fs.String("config", "", "config.yaml to read (default $CO_INFUSE_CONFIG, else <datadir>/config.yaml)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	lookup := os.LookupEnv
	if *config != "" {
		lookup = func(k string) (string, bool) {
			if k == node.EnvConfig {
				return *config, true
			}
			return os.LookupEnv(k)
		}
	}
	cfg, err := node.LoadConfigEnv(*dd, lookup)
	if err != nil {
		return err
	}
	n, err := node.New(cfg)
	if err != nil {
		return startError{err}
	}
	ctx, stop := signalContext()
	defer stop()
	if err := n.Start(ctx); err != nil {
		n.Close()
		return startError{err}
	}
	if a := n.SOCKSAddr(); a != nil {
		fmt.Fprintf(stderr, "SOCKS5 on %s\n", a)
	}
	if a := n.HTTPAddr(); a != nil {
		fmt.Fprintf(stderr, "HTTP CONNECT on %s\n", a)
	}
	select {
	case <-ctx.Done():
	case err := <-n.Fatal(): // LND never became usable (lnd.wait_for_credentials)
		n.Close()
		return startError{err}
	}
	fmt.Fprintln(stderr, "stopping...")
	return n.Close()
}

func cmdDevnet(args []string, stdout, stderr io.Writer) error {
	fs, dd := newFlags("devnet", aboutDevnet)
	relays := fs.Int("relays", 3, "relays to run")
	exits := fs.Int("exits", 2, "exits to run")
	socks := fs.String("socks", "127.0.0.1:9350", "client SOCKS5 listen address")
	httpAddr := fs.String("http", "127.0.0.1:9380", "client HTTP CONNECT listen address")
	control := fs.String("control", "127.0.0.1:9351", "client Tor control port (bitcoind -torcontrol, lnd tor.control), or off")
	web := fs.String("web", "127.0.0.1:8088", "demo web server address, or off")
	lightning := fs.Bool("lightning", true, "run a regtest btcd + 2 lnd beside the nodes and buy vouchers over Lightning (first run builds lnd: minutes)")
	mempoolN := fs.Int("mempool", -1, "delivery nodes in front of the regtest btcd, with the client's JSON-RPC port (default 3 with --lightning, 0 without; >0 without Lightning starts a btcd alone)")
	rpcAddr := fs.String("rpc", "127.0.0.1:18332", "client JSON-RPC listen address (with --mempool)")
	torFlag := fs.Bool("tor", false, "run a private Tor network beside the nodes, a tor-gateway node and a managed tor in the client (needs Debian's tor)")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if !isFlagSet(fs, "datadir") {
		*dd = filepath.Join(defaultDataDir(), "devnet")
	}
	if *mempoolN < 0 {
		*mempoolN = 0
		if *lightning {
			*mempoolN = 3
		}
	}
	controlAddr := *control
	if controlAddr == "off" {
		controlAddr = ""
	}
	ctx, stop := signalContext()
	defer stop()
	start := time.Now()
	d, err := devnet.Start(ctx, devnet.Options{
		Dir: *dd, Relays: *relays, Exits: *exits,
		SOCKSListen: *socks, HTTPListen: *httpAddr, WebListen: *web,
		ControlListen: controlAddr,
		Lightning:     *lightning,
		Mempool:       *mempoolN, RPCListen: *rpcAddr,
		WebOnion: true,
		Tor:      *torFlag,
		Progress: stdout,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\ndevnet up in %s: %d nodes, data under %s\n", time.Since(start).Round(time.Millisecond), len(d.Nodes), *dd)
	fmt.Fprintf(stdout, "SOCKS5       %s\nHTTP CONNECT %s\n", d.Client.SOCKSAddr(), d.Client.HTTPAddr())
	if a := d.Client.ControlAddr(); a != nil {
		fmt.Fprintf(stdout, "Control port %s (cookie %s)\n", a, d.Client.ControlCookie())
	}
	if d.WebAddr != nil {
		fmt.Fprintf(stdout, "\ntry:\n  curl --socks5-hostname %s http://%s/\n  curl -p -x http://%s http://%s/\n  curl --socks5-hostname %s -o /dev/null http://%s/bytes/52428800\n",
			d.Client.SOCKSAddr(), d.WebAddr, d.Client.HTTPAddr(), d.WebAddr, d.Client.SOCKSAddr(), d.WebAddr)
		if d.WebOnion != "" {
			fmt.Fprintf(stdout, "  curl --socks5-hostname %s http://%s/   (the same page as an onion service)\n", d.Client.SOCKSAddr(), d.WebOnion)
		}
	}
	if d.TorNet() != nil {
		fmt.Fprintf(stdout, "\nprivate Tor network under %s; the client's managed tor has SOCKS %s\n", d.TorNet().Dir(), d.Client.Tor().SocksAddr())
	}
	fmt.Fprintf(stdout, "  co-infuse peers --datadir %s\n", filepath.Join(*dd, "client"))
	if a := d.Client.RPCAddr(); a != nil {
		cookie := d.Client.RPCCookie()
		fmt.Fprintf(stdout, "\nJSON-RPC     %s (cookie %s; %d delivery nodes in front of the regtest btcd)\n", a, cookie, *mempoolN)
		fmt.Fprintf(stdout, "  curl --user \"$(cat %s)\" --data-binary '{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"sendrawtransaction\",\"params\":[\"<hex>\"]}' http://%s/\n", cookie, a)
		fmt.Fprintf(stdout, "  btcctl --regtest --notls -s %s -u __cookie__ -P \"$(cut -d: -f2 %s)\" sendrawtransaction <hex>\n", a, cookie)
		fmt.Fprintf(stdout, "  co-infuse status --datadir %s   # the outbox\n", filepath.Join(*dd, "client"))
	}
	if d.LN != nil {
		fmt.Fprintf(stdout, "  co-infuse wallet --datadir %s\n", filepath.Join(*dd, "client"))
	}
	fmt.Fprintln(stdout, "\nCtrl-C stops the network.")
	<-ctx.Done()
	fmt.Fprintln(stdout, "stopping devnet...")
	return d.Close()
}

func isFlagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func cmdPeers(args []string, stdout, stderr io.Writer) error {
	fs, dd := newFlags("peers", aboutPeers)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	ac, err := node.NewAdminClient(*dd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var peers []discovery.PeerStatus
	if err := ac.Get(ctx, "/v1/peers", &peers); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(peers)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tROLES\tPRICES (sat/MB)\tSTAKE\tWEIGHT\tSHARE % GUARD/MIDDLE/EXIT\tFIRST SEEN\tLAST RESULT")
	for _, p := range peers {
		fmt.Fprintln(tw, formatPeer(p))
	}
	return tw.Flush()
}

func peerIDOf(k crypto.PrivKey) (peer.ID, error) { return peer.IDFromPrivateKey(k) }

func formatPeer(p discovery.PeerStatus) string {
	roles := make([]string, len(p.Roles))
	prices := make([]string, 0, len(p.Prices))
	for i, r := range p.Roles {
		roles[i] = string(r)
		if pr, ok := p.Prices[r]; ok {
			prices = append(prices, fmt.Sprintf("%s=%d", r, pr))
		}
	}
	first := "-"
	if !p.FirstSeen.IsZero() {
		first = time.Since(p.FirstSeen).Round(time.Second).String() + " ago"
	}
	last := p.LastResult
	if last == "" {
		last = "unused"
	} else {
		last += fmt.Sprintf(" (%d ok, %d failed)", p.OK, p.Fail)
	}
	guard := ""
	if p.Guard {
		guard = " [guard]"
	}
	if !p.BannedUntil.IsZero() {
		guard += " [banned: equivocation]"
	}
	return fmt.Sprintf("%s%s\t%s\t%s\t%s\t%.4f\t%s\t%s\t%s", p.Peer, guard, strings.Join(roles, ","), strings.Join(prices, " "),
		formatStake(p.Stake), p.Weight, formatShare(p.Share), first, last)
}

// formatShare is the SHARE column: the peer's chance, in percent, of being
// picked as guard, middle and exit by one pick now.
func formatShare(s discovery.PositionShare) string {
	return fmt.Sprintf("%.2f/%.2f/%.2f", 100*s.Guard, 100*s.Middle, 100*s.Exit)
}

// formatStake is the STAKE column: the verified Lightning stake, or why
// there is none.
func formatStake(s discovery.StakeStatus) string {
	switch {
	case s.Node != "" && s.EffectiveSat < discovery.MinStakeSat:
		return fmt.Sprintf("%d sat effective, below the %d sat minimum: counts as unstaked (%d sat in %d channels, node %.12s…)", s.EffectiveSat, uint64(discovery.MinStakeSat), s.CapacitySat, s.Channels, s.Node)
	case s.Node != "":
		return fmt.Sprintf("%d sat effective (%d sat in %d channels, node %.12s…)", s.EffectiveSat, s.CapacitySat, s.Channels, s.Node)
	case s.Refused != "":
		return "refused: " + s.Refused
	case s.Proof:
		return "unchecked"
	}
	return "unstaked"
}

func cmdWallet(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "buy" {
		return cmdWalletBuy(args[1:], stdout, stderr)
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && args[0] != "help" {
		fs, _ := newFlags("wallet", aboutWallet)
		fs.SetOutput(stderr)
		fs.Usage()
		return usageError{fmt.Errorf("wallet: unknown subcommand %q", args[0])}
	}
	fs, dd := newFlags("wallet", aboutWallet)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	ac, err := node.NewAdminClient(*dd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var st node.WalletStatus
	if err := ac.Get(ctx, "/v1/wallet", &st); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "budget: %d of %d sats used in the last 24 h\n\n", st.BudgetUsedSat, st.BudgetLimitSat)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tAVAILABLE\tRESERVED\tPENDING\tEXPIRED")
	for _, id := range slices.Sorted(maps.Keys(st.Balances)) {
		b := st.Balances[id]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\n", id, b.Available, b.Reserved, b.Pending, b.Expired)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "\nrecent purchases:")
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WHEN\tNODE\tSATS\tSTATE")
	for _, p := range st.RecentPurchases {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%v\n", p.Created.Format(time.RFC3339), p.Node, p.AmountSat, p.State)
	}
	return tw.Flush()
}

func cmdWalletBuy(args []string, stdout, stderr io.Writer) error {
	fs, dd := newFlags("wallet buy", aboutWalletBuy)
	nodeID := fs.String("node", "", "peer ID of the node to buy vouchers from (see `co-infuse peers`)")
	sats := fs.Uint64("sats", 0, "amount in sats")
	if err := parseFlags(fs, args, stdout, stderr); err != nil {
		return err
	}
	if *nodeID == "" || *sats == 0 {
		fs.SetOutput(stderr)
		fs.Usage()
		return usageError{errors.New("wallet buy needs --node ID and --sats N")}
	}
	ac, err := node.NewAdminClient(*dd)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	fmt.Fprintf(stderr, "buying %d sats of vouchers from %s over Lightning...\n", *sats, *nodeID)
	var p json.RawMessage
	if err := ac.Post(ctx, "/v1/wallet/buy", node.BuyRequest{Node: *nodeID, Sats: *sats}, &p); err != nil {
		return err
	}
	_, err = stdout.Write(append(p, '\n'))
	return err
}
