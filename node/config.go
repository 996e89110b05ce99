package node

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
	"github.com/co-infuse/co-infuse/lightning"
	"github.com/co-infuse/co-infuse/mempool"
	"gopkg.in/yaml.v3"
)

// Role names a service a node offers. A node always acts as a client for its
// own front ends when SOCKS or HTTP CONNECT is enabled.
type Role string

// Roles a config may name.
const (
	RoleClient Role = "client"
	RoleRelay  Role = "relay"
	RoleExit   Role = "exit"
	// RoleMempool delivers transactions to its own bitcoind or btcd
	// (mempool.backend) at the last hop of clients' circuits.
	RoleMempool Role = "mempool"
	// RoleRendezvous relays too, and is a rendezvous point, introduction
	// point and descriptor directory for onion services (rendezvous.Server).
	RoleRendezvous Role = "rendezvous"
	// RoleTorGateway runs a managed tor (the tor section) and reaches Tor's
	// onion services for clients whose .onion has no co-infuse
	// descriptor.
	RoleTorGateway Role = "tor-gateway"
)

// Config is the whole node configuration as read from config.yaml. Each
// subsystem has its own struct; every field's comment gives its unit and
// default. Paths that are relative are taken relative to the data directory.
type Config struct {
	// DataDir holds identity keys, stores and the admin socket. Not read from
	// YAML: it is the directory the YAML file lives in (--datadir).
	DataDir string `yaml:"-"`

	// Roles lists what this node does: client, relay, exit, mempool,
	// rendezvous, tor-gateway.
	// Default [client].
	Roles []Role `yaml:"roles"`

	Network NetworkConfig `yaml:"network"`
	SOCKS   SOCKSConfig   `yaml:"socks"`
	HTTP    HTTPConfig    `yaml:"httptunnel"`
	// Control is the Tor-compatible control port (bitcoind -torcontrol,
	// lnd tor.control).
	Control ControlConfig `yaml:"control"`
	Circuit CircuitConfig `yaml:"circuit"`
	// Limits caps what other peers can make this node hold.
	Limits    LimitsConfig    `yaml:"limits"`
	Exit      ExitConfig      `yaml:"exit"`
	Discovery DiscoveryConfig `yaml:"discovery"`
	Payments  PaymentsConfig  `yaml:"payments"`
	Mempool   MempoolConfig   `yaml:"mempool"`
	// Rendezvous configures onion services: the ones this node publishes
	// (control port ADD_ONION) and its .onion dialling.
	Rendezvous RendezvousConfig `yaml:"rendezvous"`
	// LND is the user's (or operator's) LND, used when payments are on.
	LND lightning.Config `yaml:"lnd"`
	// Tor is a managed tor child process (internal/torproc): the
	// tor-gateway role's way into Tor, and dual publication of this
	// node's onion services on Tor.
	Tor TorConfig `yaml:"tor"`
	Log LogConfig `yaml:"log"`
}

// TorConfig is a local tor that the node starts, supervises and stops
// (docs/TOR.md "Managed tor"). It is on when Enabled is true or the node
// has the tor-gateway role.
type TorConfig struct {
	// Enabled starts a managed tor with the node. Default false (the
	// tor-gateway role turns it on whatever this says).
	Enabled bool `yaml:"enabled"`
	// Binary is the tor executable, a path or a name looked up in PATH.
	// Default "tor".
	Binary string `yaml:"binary"`
	// DataDir is tor's own data directory (torrc, control cookie, state).
	// Default <datadir>/tor.
	DataDir string `yaml:"data_dir"`
	// Torrc are extra torrc lines appended verbatim (e.g. a private test
	// network's DirAuthority lines). Default none.
	Torrc []string `yaml:"torrc"`
	// PublishOnions also publishes the onion services created through the
	// control port on Tor, with the same key. Default true when the
	// managed tor is on.
	PublishOnions *bool `yaml:"publish_onions"`
}

// TorEnabled reports whether the node runs a managed tor.
func (c *Config) TorEnabled() bool { return c.Tor.Enabled || c.Has(RoleTorGateway) }

// TorPublishOnions reports whether onion services are also published on
// Tor: only with a managed tor, and then unless publish_onions is false.
func (c *Config) TorPublishOnions() bool {
	return c.TorEnabled() && (c.Tor.PublishOnions == nil || *c.Tor.PublishOnions)
}

// Validate checks the tor section after ApplyDefaults.
func (tc TorConfig) Validate() error {
	if tc.Binary == "" || strings.ContainsAny(tc.Binary, "\x00\r\n") {
		return fieldErr("tor.binary", "%q is not a program name or path", tc.Binary)
	}
	if tc.DataDir == "" {
		return fieldErr("tor.data_dir", "must be set")
	}
	for i, l := range tc.Torrc {
		if strings.ContainsAny(l, "\x00\r\n") {
			return fieldErr(fmt.Sprintf("tor.torrc[%d]", i), "has a line break")
		}
	}
	return nil
}

// RendezvousConfig configures onion services (rendezvous.Manager).
type RendezvousConfig struct {
	// IntroPoints is how many introduction points each published service
	// holds. Default 3.
	IntroPoints int `yaml:"intro_points"`
	// AllowNonLoopbackTargets lets a service's port targets be addresses
	// other than loopback. Default false.
	AllowNonLoopbackTargets bool `yaml:"allow_non_loopback_targets"`
	// DisableVanguards builds a service's circuits without the layer-2
	// vanguard (guard discovery defence; THREAT_MODEL.md). Default false.
	DisableVanguards bool `yaml:"disable_vanguards"`
	// PoWEffort is the proof of work this node's onion services ask of
	// each introduction, in leading zero bits of a hash (about 2^n hashes
	// for the client), checked by the intro points; 0..24. Default 0.
	PoWEffort uint8 `yaml:"pow_effort"`
}

// NetworkConfig is the libp2p host.
type NetworkConfig struct {
	// Listen are libp2p multiaddrs to listen on. Default TCP and QUIC on
	// 127.0.0.1 with kernel-chosen ports; a relay that others must reach
	// lists a public address here.
	Listen []string `yaml:"listen"`
	// Announce replaces the addresses the node advertises (multiaddrs).
	// Default: the listen addresses.
	Announce []string `yaml:"announce"`
	// MaxConns caps libp2p connections (resource manager). Default 512.
	MaxConns int `yaml:"max_conns"`
	// AllowPrivatePeers lets this node dial peers on private, loopback and
	// link-local addresses. Default false, so that a client cannot use a
	// relay's EXTEND (or a forged advert) to make it probe the network it
	// sits in. Private deployments and loopback test networks (devnet)
	// turn it on. It is also discovery's private-network setting: only with
	// it on does a node advertise its private addresses, and do private
	// addresses form /16 groups in path selection (DISCOVERY.md §6).
	AllowPrivatePeers bool `yaml:"allow_private_peers"`
}

// SOCKSConfig is the Tor-compatible SOCKS5 port.
type SOCKSConfig struct {
	// Enabled turns the SOCKS5 port on. Default true for clients.
	Enabled *bool `yaml:"enabled"`
	// Listen is host:port. Default 127.0.0.1:9050. Use a non-loopback
	// address only behind a firewall: anyone who reaches it can use your
	// vouchers.
	Listen string `yaml:"listen"`
}

// HTTPConfig is the HTTP CONNECT port (like Tor's HTTPTunnelPort).
type HTTPConfig struct {
	// Enabled turns the HTTP CONNECT port on. Default false.
	Enabled bool `yaml:"enabled"`
	// Listen is host:port. Default 127.0.0.1:9080.
	Listen string `yaml:"listen"`
}

// ControlConfig is the Tor-compatible control port (proxy.ControlServer):
// bitcoind (-torcontrol, -listenonion) and lnd (tor.control, tor.v3)
// publish their onion services through it, on this node's rendezvous
// Manager. Off by default, as Tor's ControlPort is: a published service
// holds paid introduction circuits, and bitcoind (-listenonion defaults to
// 1) would publish one silently as soon as it found the port.
type ControlConfig struct {
	// Enabled turns the control port on (client role only). Default false.
	Enabled bool `yaml:"enabled"`
	// Listen is host:port. Default 127.0.0.1:9051 (Tor's, and bitcoind's
	// -torcontrol default).
	Listen string `yaml:"listen"`
	// CookieFile is where a fresh 32-byte cookie (COOKIE and SAFECOOKIE
	// auth) is written, mode 0600, at every start; the controller must be
	// able to read it. Default <datadir>/control_auth_cookie; "off" turns
	// cookie auth off.
	CookieFile string `yaml:"cookie_file"`
	// Password turns on HASHEDPASSWORD auth with this password
	// (bitcoind -torpassword, lnd tor.password). Default none.
	Password string `yaml:"password"`
	// NullAuth lets any local process in without a secret (Tor's
	// METHODS=NULL); it excludes cookie and password, and only a loopback
	// listen address may use it. Default false.
	NullAuth bool `yaml:"null_auth"`
}

// CircuitConfig shapes the circuits this node builds as a client.
type CircuitConfig struct {
	// Hops is the circuit length including the exit. Default 3, range 1..8.
	Hops int `yaml:"hops"`
	// BuildTimeout bounds building one circuit. Default 30s.
	BuildTimeout time.Duration `yaml:"build_timeout"`
	// StreamTimeout bounds opening one stream (BEGIN to CONNECTED). Default 60s.
	StreamTimeout time.Duration `yaml:"stream_timeout"`
	// MaxIsolated caps how many isolated circuits (one per SOCKS credential
	// pair) the client keeps open at once; the least recently used is closed
	// beyond it. Default 64.
	MaxIsolated int `yaml:"max_isolated"`
	// IdleClose closes an isolated circuit with no stream for this long.
	// Default 10m.
	IdleClose time.Duration `yaml:"idle_close"`
	// MaxDirtiness is how long after its first stream a circuit takes new
	// streams (Tor's MaxCircuitDirtiness); later streams of the same
	// isolation key get a new circuit. Default 10m.
	MaxDirtiness time.Duration `yaml:"max_dirtiness"`
	// Preemptive is how many clean circuits are kept built ahead, so that
	// a connection with fresh credentials (bitcoind's -proxyrandomize, lnd's
	// tor.streamisolation) does not wait for a build. Each holds one
	// circuit at each of its hops. Default 2; -1 turns it off.
	Preemptive int `yaml:"preemptive"`
	// PredictedPorts are ports kept covered by pre-built circuits at all
	// times. Default none: as in Tor, circuits are pre-built for the ports
	// streams used in the last hour, so an idle client stops building (and,
	// with payments on, prepaying) circuits nobody uses. Listing a port
	// (8333, 9735) keeps circuits ready for it always, at the price of one
	// circuit's prepayment per pre-built circuit per hour while idle.
	PredictedPorts []uint16 `yaml:"predicted_ports"`
}

// ExitConfig is the exit role's policy.
type ExitConfig struct {
	// Policy is an ordered list of rules evaluated before the default rules
	// ("reject *:25", "accept *:*"), e.g. "accept *:443", "reject *:*".
	// Default: none. Whatever the rules say, every address that is not on
	// the public internet (private, loopback, link-local, CGNAT, multicast,
	// unspecified, broadcast, documentation, benchmarking, reserved, and
	// their IPv4-mapped, NAT64 and 6to4 forms) is refused before them,
	// unless AllowPrivateRanges opens it; an accept rule covering only
	// such addresses is a config error.
	Policy []string `yaml:"policy"`
	// AllowPrivateRanges opens non-public ranges to the exit, which the
	// rules then judge like public ones: "loopback" (127.0.0.0/8 and
	// ::1/128), a prefix ("10.8.0.0/16", "fd00::/8") or an address, each
	// inside one non-public range (exit.ParsePrivateRanges). Default none;
	// devnet sets loopback so that a newcomer can fetch a local page. It
	// never opens NAT64 or 6to4 addresses that embed these ranges.
	AllowPrivateRanges []string `yaml:"allow_private_ranges"`
	// AllowLoopback is the setting AllowPrivateRanges replaced. false (what
	// earlier configs say) is accepted and means nothing; true is a config
	// error naming the new field, so that no range opens under an old name.
	// Never written by RenderConfig.
	AllowLoopback *bool `yaml:"allow_loopback,omitempty"`
	// DialTimeout bounds one TCP connect at the exit. Default 20s.
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// DiscoveryConfig is where the node finds others.
type DiscoveryConfig struct {
	// Mode is "ipfs" (the public IPFS DHT, Amino, /ipfs/kad/1.0.0: how
	// nodes find each other on the real network) or "private" (a
	// co-infuse-only DHT with the /co-infuse prefix, joined through the
	// bootstrap peers below: devnet, tests, private deployments).
	// DefaultConfig, and so `co-infuse init`, sets ipfs. A config file
	// without a mode key is private, as it was before ipfs became the
	// default, so an existing private deployment never moves to the public
	// DHT unasked (DISCOVERY.md §1).
	Mode string `yaml:"mode"`
	// Bootstrap are multiaddrs with /p2p/<peer id> of nodes to join through.
	// In ipfs mode an empty list becomes the public Amino bootstrap peers
	// (discovery.AminoBootstrap); private mode has no default.
	Bootstrap []string `yaml:"bootstrap"`
	// AllowSameNetwork drops the rule that no two hops share an IPv4 /16,
	// an IPv6 /32 or a declared family. Only for loopback test networks such
	// as devnet. Default false.
	AllowSameNetwork bool `yaml:"allow_same_network"`
	// StakeProof: a relay or exit with payments on publishes a proof,
	// signed by its LND, that its Lightning node stakes it (DISCOVERY.md
	// §7). Clients weigh staked nodes by stake, and every node proving one
	// Lightning node is one family. Set false where several nodes share one
	// LND but should not count as one operator's (a test network); the
	// node then weighs as unstaked. Default true.
	StakeProof *bool `yaml:"stake_proof"`
	// Family lists peer IDs of other nodes run by the same operator.
	Family []string `yaml:"family"`
	// PriceSatPerMB is what this node charges per relayed MB, per role
	// (relay, exit, mempool, rendezvous, tor-gateway). Default relay 1,
	// exit 2, mempool 2, rendezvous 1, tor-gateway the exit price (2).
	PriceSatPerMB map[Role]uint64 `yaml:"price_sat_per_mb"`
	// MaxPriceSatPerMB is the most this client pays a hop per MB. Default 10.
	MaxPriceSatPerMB uint64 `yaml:"max_price_sat_per_mb"`
}

// MempoolConfig is transaction delivery: the mempool role's backend and
// the client's bitcoind-compatible JSON-RPC port.
type MempoolConfig struct {
	// Backend is the mempool role's own bitcoind or btcd RPC, which the
	// transactions clients deliver are handed to. Required with the
	// mempool role.
	Backend mempool.BackendConfig `yaml:"backend"`
	// RPC is the client's JSON-RPC front end (sendrawtransaction through
	// circuits).
	RPC MempoolRPCConfig `yaml:"rpc"`
	// MaxQueued caps transactions in the client's outbox. Default 1000.
	MaxQueued int `yaml:"max_queued"`
	// VerdictWait bounds how long sendrawtransaction waits for the first
	// delivery node's verdict before it returns the txid and leaves the
	// transaction queued. Default 30s.
	VerdictWait time.Duration `yaml:"verdict_wait"`
	// GiveUpAfter is how long the client keeps trying to deliver (and
	// see echoed) a queued transaction before it gives it up: dropped
	// from the queue with a log line, listed as given up by
	// getprivatebroadcastinfo. Default 24h.
	GiveUpAfter time.Duration `yaml:"give_up_after"`
	// MaxAttempts caps the delivery and echo rounds of one transaction
	// before it is given up likewise. Default 300.
	MaxAttempts int `yaml:"max_attempts"`
}

// MempoolRPCConfig is the client's bitcoind-compatible JSON-RPC port.
type MempoolRPCConfig struct {
	// Enabled turns the port on (client role only). Default false.
	Enabled bool `yaml:"enabled"`
	// Listen is host:port. Default 127.0.0.1:9332.
	Listen string `yaml:"listen"`
	// User and Password are bitcoind's rpcuser/rpcpassword; empty means
	// cookie authentication only.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// Cookie is where bitcoind's .cookie file is written at each start
	// (0600). Default <datadir>/rpc.cookie.
	Cookie string `yaml:"cookie"`
	// Upstream is the user's own bitcoind or btcd RPC ("host:port" or an
	// http:// URL): every method other than the broadcast ones is
	// forwarded to it unchanged. Empty: they are answered -32601.
	Upstream         string `yaml:"upstream"`
	UpstreamUser     string `yaml:"upstream_user"`
	UpstreamPassword string `yaml:"upstream_password"`
	UpstreamCookie   string `yaml:"upstream_cookie"`
	// ForwardWalletSends forwards sendtoaddress, sendmany, send, sendall
	// and bumpfee to the upstream. Default false: they are refused, since
	// the upstream's wallet would broadcast in the clear. Turn it on only
	// for an upstream run with -walletbroadcast=0.
	ForwardWalletSends bool `yaml:"forward_wallet_sends"`
}

// LogConfig is log output.
type LogConfig struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
}

// MaxPriceSatPerMB bounds every price in the config: 10^6 sat/MB (one
// sat per byte) is far above any sane price and keeps msat arithmetic
// (price × 1000) far from overflow.
const MaxPriceSatPerMB = 1_000_000

// ErrConfig marks every configuration error; the message names the field.
var ErrConfig = errors.New("config")

func fieldErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// DefaultConfig is a client-only node with SOCKS on 127.0.0.1:9050 that
// joins the public IPFS DHT (discovery mode ipfs, Amino bootstrap peers).
func DefaultConfig(dataDir string) Config {
	c := Config{DataDir: dataDir}
	c.Discovery.Mode = discovery.ModeIPFS
	c.ApplyDefaults()
	return c
}

// ApplyDefaults fills every zero field with its documented default.
func (c *Config) ApplyDefaults() {
	// Empty lists are canonically nil, whether YAML said [] or nothing.
	for _, l := range []*[]string{&c.Network.Announce, &c.Exit.Policy, &c.Exit.AllowPrivateRanges, &c.Discovery.Bootstrap, &c.Discovery.Family} {
		if len(*l) == 0 {
			*l = nil
		}
	}
	if len(c.Circuit.PredictedPorts) == 0 {
		c.Circuit.PredictedPorts = nil
	}
	if len(c.Roles) == 0 {
		c.Roles = []Role{RoleClient}
	}
	if c.Discovery.StakeProof == nil {
		on := true
		c.Discovery.StakeProof = &on
	}
	if len(c.Network.Listen) == 0 {
		c.Network.Listen = []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"}
	}
	if c.Network.MaxConns == 0 {
		c.Network.MaxConns = 512
	}
	if c.SOCKS.Enabled == nil {
		on := c.Has(RoleClient)
		c.SOCKS.Enabled = &on
	}
	if c.SOCKS.Listen == "" {
		c.SOCKS.Listen = "127.0.0.1:9050"
	}
	if c.HTTP.Listen == "" {
		c.HTTP.Listen = "127.0.0.1:9080"
	}
	if c.Control.Listen == "" {
		c.Control.Listen = "127.0.0.1:9051"
	}
	if c.Circuit.Hops == 0 {
		c.Circuit.Hops = 3
	}
	if c.Circuit.BuildTimeout == 0 {
		c.Circuit.BuildTimeout = 30 * time.Second
	}
	if c.Circuit.StreamTimeout == 0 {
		c.Circuit.StreamTimeout = 60 * time.Second
	}
	if c.Circuit.MaxIsolated == 0 {
		c.Circuit.MaxIsolated = 64
	}
	if c.Circuit.IdleClose == 0 {
		c.Circuit.IdleClose = 10 * time.Minute
	}
	if c.Circuit.MaxDirtiness == 0 {
		c.Circuit.MaxDirtiness = 10 * time.Minute
	}
	if c.Circuit.Preemptive == 0 {
		c.Circuit.Preemptive = 2
	}
	if c.Exit.DialTimeout == 0 {
		c.Exit.DialTimeout = 20 * time.Second
	}
	if c.Discovery.Mode == "" {
		c.Discovery.Mode = discovery.ModePrivate // a file without a mode key
	}
	if c.Discovery.Mode == discovery.ModeIPFS && len(c.Discovery.Bootstrap) == 0 {
		c.Discovery.Bootstrap = discovery.AminoBootstrap()
	}
	if c.Discovery.PriceSatPerMB == nil {
		c.Discovery.PriceSatPerMB = map[Role]uint64{RoleRelay: 1, RoleExit: 2, RoleRendezvous: 1}
	}
	if _, ok := c.Discovery.PriceSatPerMB[RoleMempool]; !ok && c.Has(RoleMempool) {
		c.Discovery.PriceSatPerMB[RoleMempool] = 2
	}
	if _, ok := c.Discovery.PriceSatPerMB[RoleTorGateway]; !ok && c.Has(RoleTorGateway) {
		c.Discovery.PriceSatPerMB[RoleTorGateway] = c.Discovery.PriceSatPerMB[RoleExit] // priced like an exit
		if c.Discovery.PriceSatPerMB[RoleTorGateway] == 0 {
			c.Discovery.PriceSatPerMB[RoleTorGateway] = 2
		}
	}
	if c.Mempool.RPC.Listen == "" {
		c.Mempool.RPC.Listen = "127.0.0.1:9332"
	}
	if c.Mempool.RPC.Cookie == "" {
		c.Mempool.RPC.Cookie = "rpc.cookie"
	}
	if c.Mempool.MaxQueued == 0 {
		c.Mempool.MaxQueued = mempool.DefaultMaxQueued
	}
	if c.Mempool.VerdictWait == 0 {
		c.Mempool.VerdictWait = mempool.DefaultVerdictWait
	}
	if c.Mempool.GiveUpAfter == 0 {
		c.Mempool.GiveUpAfter = mempool.DefaultGiveUpAfter
	}
	if c.Mempool.MaxAttempts == 0 {
		c.Mempool.MaxAttempts = mempool.DefaultMaxAttempts
	}
	if c.Discovery.MaxPriceSatPerMB == 0 {
		c.Discovery.MaxPriceSatPerMB = 10
	}
	c.Payments.applyDefaults()
	if len(c.Tor.Torrc) == 0 {
		c.Tor.Torrc = nil
	}
	if c.Tor.Binary == "" {
		c.Tor.Binary = "tor"
	}
	if c.Tor.DataDir == "" {
		c.Tor.DataDir = "tor"
	}
	c.Limits.applyDefaults()
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
}

// Has reports whether the config names role r.
func (c Config) Has(r Role) bool {
	for _, x := range c.Roles {
		if x == r {
			return true
		}
	}
	return false
}

// SOCKSEnabled reports whether the SOCKS port is on.
func (c *Config) SOCKSEnabled() bool { return c.SOCKS.Enabled != nil && *c.SOCKS.Enabled }

// Validate checks the config after ApplyDefaults and names the first bad field.
func (c *Config) Validate() error {
	if c.DataDir == "" {
		return fieldErr("datadir", "must be set")
	}
	seen := map[Role]bool{}
	for i, r := range c.Roles {
		switch r {
		case RoleClient, RoleRelay, RoleExit, RoleMempool, RoleRendezvous, RoleTorGateway:
		default:
			return fieldErr(fmt.Sprintf("roles[%d]", i), "unknown role %q (want client, relay, exit, mempool, rendezvous or tor-gateway)", r)
		}
		if seen[r] {
			return fieldErr(fmt.Sprintf("roles[%d]", i), "role %q listed twice", r)
		}
		seen[r] = true
	}
	for i, s := range c.Network.Listen {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fieldErr(fmt.Sprintf("network.listen[%d]", i), "%q is not a multiaddr: %v", s, err)
		}
	}
	for i, s := range c.Network.Announce {
		if _, err := ma.NewMultiaddr(s); err != nil {
			return fieldErr(fmt.Sprintf("network.announce[%d]", i), "%q is not a multiaddr: %v", s, err)
		}
	}
	if c.Network.MaxConns < 8 {
		return fieldErr("network.max_conns", "%d is too small (at least 8)", c.Network.MaxConns)
	}
	if c.SOCKSEnabled() {
		if err := checkHostPort(c.SOCKS.Listen); err != nil {
			return fieldErr("socks.listen", "%v", err)
		}
	}
	if c.HTTP.Enabled {
		if err := checkHostPort(c.HTTP.Listen); err != nil {
			return fieldErr("httptunnel.listen", "%v", err)
		}
	}
	if err := c.Control.validate(c.Has(RoleClient)); err != nil {
		return err
	}
	if (c.SOCKSEnabled() || c.HTTP.Enabled) && !c.Has(RoleClient) {
		return fieldErr("roles", "socks or httptunnel is enabled but the client role is not listed")
	}
	if c.Circuit.Hops < 1 || c.Circuit.Hops > 8 {
		return fieldErr("circuit.hops", "%d is out of range 1..8", c.Circuit.Hops)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"circuit.build_timeout", c.Circuit.BuildTimeout},
		{"circuit.stream_timeout", c.Circuit.StreamTimeout},
		{"circuit.idle_close", c.Circuit.IdleClose},
		{"circuit.max_dirtiness", c.Circuit.MaxDirtiness},
		{"exit.dial_timeout", c.Exit.DialTimeout},
	} {
		if d.v < 0 {
			return fieldErr(d.name, "must not be negative")
		}
	}
	if _, err := c.ExitPolicy(); err != nil {
		return err
	}
	if c.Circuit.MaxIsolated < 1 {
		return fieldErr("circuit.max_isolated", "must be at least 1")
	}
	if c.Circuit.Preemptive < -1 || c.Circuit.Preemptive > 16 {
		return fieldErr("circuit.preemptive", "%d is out of range -1..16 (-1 turns pre-built circuits off)", c.Circuit.Preemptive)
	}
	for i, p := range c.Circuit.PredictedPorts {
		if p == 0 {
			return fieldErr(fmt.Sprintf("circuit.predicted_ports[%d]", i), "port 0")
		}
	}
	if err := c.Limits.validate(); err != nil {
		return err
	}
	switch c.Discovery.Mode {
	case discovery.ModeIPFS, discovery.ModePrivate:
	default:
		return fieldErr("discovery.mode", "%q is not %q (the public IPFS DHT) or %q (a co-infuse-only DHT)",
			c.Discovery.Mode, discovery.ModeIPFS, discovery.ModePrivate)
	}
	for i, s := range c.Discovery.Bootstrap {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			return fieldErr(fmt.Sprintf("discovery.bootstrap[%d]", i), "%q is not a multiaddr: %v", s, err)
		}
		if _, err := a.ValueForProtocol(ma.P_P2P); err != nil {
			return fieldErr(fmt.Sprintf("discovery.bootstrap[%d]", i), "%q lacks /p2p/<peer id>", s)
		}
	}
	for r, p := range c.Discovery.PriceSatPerMB {
		if r != RoleRelay && r != RoleExit && r != RoleMempool && r != RoleRendezvous && r != RoleTorGateway {
			return fieldErr("discovery.price_sat_per_mb", "unknown role %q", r)
		}
		if p > MaxPriceSatPerMB {
			return fieldErr("discovery.price_sat_per_mb", "%s: %d is above %d sat/MB", r, p, MaxPriceSatPerMB)
		}
	}
	if n := c.Rendezvous.IntroPoints; n < 0 || n > 8 {
		return fieldErr("rendezvous.intro_points", "%d is not 0..8", n)
	}
	if e := c.Rendezvous.PoWEffort; e > 24 {
		return fieldErr("rendezvous.pow_effort", "%d is above 24", e)
	}
	if c.Discovery.MaxPriceSatPerMB > MaxPriceSatPerMB {
		return fieldErr("discovery.max_price_sat_per_mb", "%d is above %d sat/MB", c.Discovery.MaxPriceSatPerMB, MaxPriceSatPerMB)
	}
	if c.Payments.RefillMean < 100*time.Millisecond && c.Payments.RefillMean != 0 {
		return fieldErr("payments.refill_mean", "%v is below 100ms", c.Payments.RefillMean)
	}
	if c.Payments.MaxNewCircuitsPerMinute < 0 {
		return fieldErr("payments.max_new_circuits_per_minute", "%d is negative", c.Payments.MaxNewCircuitsPerMinute)
	}
	if c.Payments.Enabled {
		if err := c.LND.Validate(); err != nil {
			return fmt.Errorf("%w: payments.enabled needs the lnd section: %v", ErrConfig, err)
		}
	}
	if c.Has(RoleMempool) {
		if err := c.Mempool.Backend.Validate(); err != nil {
			return fieldErr("mempool.backend", "%v (the mempool role needs its own bitcoind or btcd)", err)
		}
	}
	if c.Mempool.RPC.Enabled {
		if !c.Has(RoleClient) {
			return fieldErr("mempool.rpc.enabled", "needs the client role")
		}
		if err := checkHostPort(c.Mempool.RPC.Listen); err != nil {
			return fieldErr("mempool.rpc.listen", "%v", err)
		}
		if (c.Mempool.RPC.User == "") != (c.Mempool.RPC.Password == "") {
			return fieldErr("mempool.rpc.user", "user and password go together")
		}
		if (c.Mempool.RPC.UpstreamUser == "") != (c.Mempool.RPC.UpstreamPassword == "") {
			return fieldErr("mempool.rpc.upstream_user", "upstream_user and upstream_password go together")
		}
	}
	if c.Mempool.MaxQueued < 1 {
		return fieldErr("mempool.max_queued", "must be at least 1")
	}
	if c.Mempool.VerdictWait < 0 {
		return fieldErr("mempool.verdict_wait", "must not be negative")
	}
	if c.Mempool.GiveUpAfter < 0 {
		return fieldErr("mempool.give_up_after", "must not be negative")
	}
	if c.Mempool.MaxAttempts < 0 {
		return fieldErr("mempool.max_attempts", "must not be negative")
	}
	if err := c.Tor.Validate(); err != nil {
		return err
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		return fieldErr("log.level", "%q is not debug, info, warn or error", c.Log.Level)
	}
	return nil
}

// ExitPolicy builds the exit policy from exit.policy and
// exit.allow_private_ranges; errors wrap ErrConfig and name the bad field.
func (c *Config) ExitPolicy() (*exit.Policy, error) {
	if c.Exit.AllowLoopback != nil && *c.Exit.AllowLoopback {
		return nil, fieldErr("exit.allow_loopback", "was replaced by exit.allow_private_ranges: write allow_private_ranges: [loopback] instead")
	}
	open, err := exit.ParsePrivateRanges(c.Exit.AllowPrivateRanges)
	if err != nil {
		return nil, fieldErr("exit.allow_private_ranges", "%v", err)
	}
	p, err := exit.NewPolicy(c.Exit.Policy, open)
	if err != nil {
		return nil, fieldErr("exit.policy", "%v", err)
	}
	return p, nil
}

// checkHostPort accepts ip:port or localhost:port; port 0 means "any free
// port" and is allowed (tests and devnet use it).
func checkHostPort(s string) error {
	if _, err := netip.ParseAddrPort(s); err == nil {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host != "localhost" {
		return fmt.Errorf("%q is not ip:port", s)
	}
	if _, err := netip.ParseAddrPort("127.0.0.1:" + port); err != nil {
		return fmt.Errorf("%q has a bad port", s)
	}
	return nil
}

// validate checks the control section; client is whether the client role
// is on.
func (cc ControlConfig) validate(client bool) error {
	if !cc.Enabled {
		return nil
	}
	if !client {
		return fieldErr("control.enabled", "the control port needs the client role")
	}
	if err := checkHostPort(cc.Listen); err != nil {
		return fieldErr("control.listen", "%v", err)
	}
	if cc.NullAuth {
		if cc.Password != "" || (cc.CookieFile != "" && cc.CookieFile != "off") {
			return fieldErr("control.null_auth", "excludes control.password and control.cookie_file")
		}
		if ap, err := netip.ParseAddrPort(cc.Listen); err == nil && !ap.Addr().IsLoopback() {
			return fieldErr("control.null_auth", "only on a loopback listen address (%s is not)", cc.Listen)
		}
		return nil
	}
	if cc.CookieFile == "off" && cc.Password == "" {
		return fieldErr("control.cookie_file", "cookie auth is off and no control.password is set: nobody could authenticate")
	}
	if strings.ContainsAny(cc.Password, "\r\n") {
		return fieldErr("control.password", "has a line break")
	}
	return nil
}

// ConfigFile is the config's name inside the data directory.
const ConfigFile = "config.yaml"

// LoadConfig reads dataDir/config.yaml, applies defaults and validates it.
func LoadConfig(dataDir string) (Config, error) {
	path := filepath.Join(dataDir, ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Config{}, fmt.Errorf("no config at %s: run `co-infuse init --datadir %s` first", path, dataDir)
		}
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	return ParseConfig(dataDir, raw)
}

// ParseConfig decodes YAML strictly (unknown fields are errors), applies
// defaults and validates.
func ParseConfig(dataDir string, raw []byte) (Config, error) {
	var c Config
	if err := decodeYAML(raw, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrConfig, ConfigFile, err)
	}
	c.DataDir = dataDir
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decodeYAML decodes raw into c strictly: unknown fields are errors, an
// empty document is not.
func decodeYAML(raw []byte, c *Config) error {
	dec := yaml.NewDecoder(strings.NewReader(string(raw)))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
