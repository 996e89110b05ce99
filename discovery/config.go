package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Discovery modes.
const (
	// ModePrivate runs a co-infuse-only DHT (protocol prefix /co-infuse) with
	// the configured bootstrap peers: devnet, tests, private deployments.
	ModePrivate = "private"
	// ModeIPFS joins the public Amino DHT (/ipfs/kad/1.0.0). Bootstrap
	// defaults to AminoBootstrap unless Config.Bootstrap is set.
	ModeIPFS = "ipfs"
)

// AminoBootstrap returns the public Amino DHT bootstrap peers that
// go-libp2p-kad-dht ships (dht.DefaultBootstrapPeers), as multiaddr
// strings ending in /p2p/<peer id>, the form config.yaml uses. Most are
// /dnsaddr names resolved when dialled. ipfs mode joins through them when
// Config.Bootstrap is nil. Every call returns a new slice.
func AminoBootstrap() []string {
	out := make([]string, 0, len(dht.DefaultBootstrapPeers))
	for _, a := range dht.DefaultBootstrapPeers {
		out = append(out, a.String())
	}
	return out
}

// Config configures a Service. The zero value, with a Logger, is a private
// mode client with no bootstrap peers and no disk cache: a library user
// (and every test) joins the public DHT only by asking for ModeIPFS. The
// node's config chooses ipfs for new nodes (node.DefaultConfig).
type Config struct {
	// Mode is ModePrivate (default) or ModeIPFS.
	Mode string `yaml:"mode"`
	// Bootstrap peers to connect to at Start. In ipfs mode a nil list means
	// the public bootstrap peers (AminoBootstrap); a non-nil empty list
	// means none. Private mode never falls back to public peers.
	Bootstrap []peer.AddrInfo `yaml:"-"`
	// CacheDir holds discovery.db (adverts, statistics, guards; mode 0600).
	// Empty: memory only, nothing survives a restart.
	CacheDir string `yaml:"cache_dir"`
	// AllowSameNetwork turns off the same-/16 (IPv6 /32) and same-family
	// rules and the per-network weight split. Only for loopback networks
	// such as devnet, where every node is 127.0.0.1. Default false.
	AllowSameNetwork bool `yaml:"allow_same_network"`
	// AllowPrivate is the private-network setting. Off (default), loopback,
	// private (RFC 1918, 100.64/10 CGNAT, fc00::/7), link-local and
	// unspecified addresses never form /16 (/32) groups, so two relays that
	// both show a Docker-bridge or LAN address do not conflict, and Publish
	// leaves them out of this node's advert (unless AllowSameNetwork, the
	// loopback test-net setting, is on). On, they are advertised and grouped
	// by /16 like public ones (container networks in distinct /16s).
	AllowPrivate bool `yaml:"allow_private"`
	// Guards is the number of entry guards kept. Default 3.
	Guards int `yaml:"guards"`
	// DHTServer runs the DHT in server mode (relays and other public nodes
	// should); default client mode. The mode is fixed, never switched by
	// AutoNAT reachability (kad-dht's ModeAuto is not used). A client-mode
	// node queries and provides but does not answer DHT queries, so it
	// holds no records for others; it also answers no advert query
	// (ProtocolAdvert is not registered): a pure client says nothing about
	// what it knows or will use. In ipfs mode a server answers Amino
	// queries and stores IPFS provider and /pk, /ipns records for the whole
	// IPFS network, up to MaxDHTRecords.
	DHTServer bool `yaml:"dht_server"`
	// DisableAutoRefresh turns off periodic DHT routing-table refresh
	// (tests). Default false.
	DisableAutoRefresh bool `yaml:"-"`
	// ViewRefresh is how often the node looks up every role key again in
	// the background, whatever it is about to do (as a Tor client fetches
	// the consensus on a schedule), so that nodes that publish after its
	// first lookup are found even while it already knows enough to build
	// paths. Default DefaultViewRefresh (10m); negative turns it off.
	ViewRefresh time.Duration `yaml:"-"`
	// AdvertTTL is the expiry Publish gives adverts, at most
	// MaxAdvertLifetime. Default DefaultAdvertTTL (6h).
	AdvertTTL time.Duration `yaml:"advert_ttl"`
	// Republish is how often a published advert is re-signed and
	// re-provided. Default DefaultRepublish (1h); must be < AdvertTTL.
	Republish time.Duration `yaml:"republish"`
	// FetchTimeout bounds fetching one advert. Default 10s.
	FetchTimeout time.Duration `yaml:"fetch_timeout"`
	// FailBackoff is how long a failing node is avoided. Default 10m.
	FailBackoff time.Duration `yaml:"fail_backoff"`
	// AgeRamp is the age at which a node gets full weight. Default 7 days.
	// Negative disables the age factor.
	AgeRamp time.Duration `yaml:"age_ramp"`
	// MaxKnown bounds adverts kept in memory and on disk. Default 4096.
	MaxKnown int `yaml:"max_known"`
	// MaxProviders bounds provider records examined per Find. Default 512.
	MaxProviders int `yaml:"max_providers"`
	// MaxDHTRecords bounds records other peers can make our DHT store.
	// Default 100000.
	MaxDHTRecords int `yaml:"max_dht_records"`
	// SignStake signs a stake message with this node's Lightning node key
	// (lnd SignMessage) and returns the zbase32 signature. Nil: adverts go
	// out unstaked. Only relays need it.
	SignStake func(ctx context.Context, msg []byte) (string, error) `yaml:"-"`
	// VerifyStake asks the client's LND which Lightning node signed msg
	// (lnd VerifyMessage) and returns its key as 66 hex digits, "" with a
	// nil error when the signature does not verify, and an error only when
	// LND cannot answer now (the check is retried; the cached verdict
	// stays). Nil, or NodeChannels nil: every node counts as unstaked.
	VerifyStake func(ctx context.Context, msg []byte, sig string) (string, error) `yaml:"-"`
	// NodeChannels returns the public channels of a Lightning node in the
	// client's LND graph and LND's best block height; no channels and a
	// nil error when the node is not in the graph; an error only when LND
	// cannot answer now.
	NodeChannels func(ctx context.Context, node string) ([]StakeChannel, uint32, error) `yaml:"-"`
	// StakeMaxStale is how long a verified stake keeps counting after the
	// client's LND last confirmed it (LND offline). Default
	// DefaultStakeMaxStale (14 days); then the node weighs as unstaked.
	StakeMaxStale time.Duration `yaml:"stake_max_stale"`
	// Logger receives debug logs of rejected adverts and errors; nil means
	// slog.Default(). A "subsys"="discovery" attribute is added.
	Logger *slog.Logger `yaml:"-"`
	// Now is the clock; nil means time.Now. Network deadlines always use
	// the real clock.
	Now func() time.Time `yaml:"-"`
}

// Validate checks c and names the first bad field.
func (c *Config) Validate() error {
	bad := func(field string, v any) error {
		return fmt.Errorf("%w: discovery.%s: %v", ErrBadConfig, field, v)
	}
	switch c.Mode {
	case "", ModePrivate, ModeIPFS:
	default:
		return bad("mode", fmt.Sprintf("%q is not %q or %q", c.Mode, ModePrivate, ModeIPFS))
	}
	if c.Guards < 0 || c.Guards > 16 {
		return bad("guards", c.Guards)
	}
	if c.AdvertTTL < 0 || c.AdvertTTL > MaxAdvertLifetime {
		return bad("advert_ttl", c.AdvertTTL)
	}
	if c.Republish < 0 || (c.Republish > 0 && c.AdvertTTL > 0 && c.Republish >= c.AdvertTTL) {
		return bad("republish", c.Republish)
	}
	if c.FetchTimeout < 0 {
		return bad("fetch_timeout", c.FetchTimeout)
	}
	if c.FailBackoff < 0 {
		return bad("fail_backoff", c.FailBackoff)
	}
	if c.StakeMaxStale < 0 {
		return bad("stake_max_stale", c.StakeMaxStale)
	}
	if c.MaxKnown < 0 {
		return bad("max_known", c.MaxKnown)
	}
	if c.MaxProviders < 0 {
		return bad("max_providers", c.MaxProviders)
	}
	if c.MaxDHTRecords < 0 {
		return bad("max_dht_records", c.MaxDHTRecords)
	}
	for i, b := range c.Bootstrap {
		if b.ID == "" || len(b.Addrs) == 0 {
			return bad(fmt.Sprintf("bootstrap[%d]", i), "needs a peer id and an address")
		}
	}
	return nil
}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = ModePrivate
	}
	if c.Guards == 0 {
		c.Guards = 3
	}
	if c.AdvertTTL == 0 {
		c.AdvertTTL = DefaultAdvertTTL
	}
	if c.Republish == 0 {
		c.Republish = min(DefaultRepublish, c.AdvertTTL/2)
	}
	if c.FetchTimeout == 0 {
		c.FetchTimeout = DefaultFetchTimeout
	}
	if c.FailBackoff == 0 {
		c.FailBackoff = DefaultFailBackoff
	}
	if c.ViewRefresh == 0 {
		c.ViewRefresh = DefaultViewRefresh
	}
	if c.AgeRamp == 0 {
		c.AgeRamp = DefaultAgeRamp
	}
	if c.StakeMaxStale == 0 {
		c.StakeMaxStale = DefaultStakeMaxStale
	}
	if c.MaxKnown == 0 {
		c.MaxKnown = DefaultMaxKnown
	}
	if c.MaxProviders == 0 {
		c.MaxProviders = DefaultMaxProviders
	}
	if c.MaxDHTRecords == 0 {
		c.MaxDHTRecords = DefaultMaxDHTRecords
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}
