package node

import (
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/co-infuse/co-infuse/discovery"
)

// EnvPrefix starts every environment variable the node reads. A variable is
// named after the YAML path of the field it sets: upper case, dots and
// dashes as underscores (lnd.tlscertpath is CO_INFUSE_LND_TLSCERTPATH).
const EnvPrefix = "CO_INFUSE_"

// Environment variables that are not config fields.
const (
	// EnvDataDir is the default of every command's --datadir.
	EnvDataDir = EnvPrefix + "DATADIR"
	// EnvConfig is the path of config.yaml, for a file mounted outside the
	// (writable) data directory. Default <datadir>/config.yaml.
	EnvConfig = EnvPrefix + "CONFIG"
	// EnvIdentityKey is a relay's or exit's identity key, base64 of the
	// identity.key file, written into the data directory (mode 0600) on
	// first start. For a container whose peer ID must be known before it
	// starts (compose.devnet.yml's bootstrap nodes); an identity.key that
	// exists and differs is an error.
	EnvIdentityKey = EnvPrefix + "IDENTITY_KEY"
)

// EnvVar is one environment variable the node reads.
type EnvVar struct {
	// Name is the variable, CO_INFUSE_….
	Name string
	// Field is the config field it sets (YAML path), empty for EnvDataDir,
	// EnvConfig and EnvIdentityKey.
	Field string
	// Doc says what a value looks like.
	Doc string

	set func(c *Config, v string) error
}

// EnvVars lists every variable LoadConfigEnv and the command read, in the
// order of config.yaml's sections.
func EnvVars() []EnvVar {
	vars := []EnvVar{
		{Name: EnvDataDir, Doc: "data directory (default ~/.co-infuse; /data in the image)"},
		{Name: EnvConfig, Doc: "path of config.yaml (default <datadir>/config.yaml)"},
		{Name: EnvIdentityKey, Doc: "base64 of a relay's identity.key, written on first start"},
		{Name: "CO_INFUSE_ROLES", Field: "roles", Doc: "comma-separated: client, relay, exit, mempool, rendezvous, tor-gateway",
			set: func(c *Config, v string) error {
				c.Roles = nil
				for _, r := range splitList(v, ",") {
					c.Roles = append(c.Roles, Role(r))
				}
				return nil
			}},
		{Name: "CO_INFUSE_NETWORK_LISTEN", Field: "network.listen", Doc: "comma-separated libp2p multiaddrs",
			set: func(c *Config, v string) error { c.Network.Listen = splitList(v, ","); return nil }},
		{Name: "CO_INFUSE_NETWORK_ANNOUNCE", Field: "network.announce", Doc: "comma-separated libp2p multiaddrs",
			set: func(c *Config, v string) error { c.Network.Announce = splitList(v, ","); return nil }},
		{Name: "CO_INFUSE_NETWORK_MAX_CONNS", Field: "network.max_conns", Doc: "integer",
			set: func(c *Config, v string) error { return parseInt(v, &c.Network.MaxConns) }},
		{Name: "CO_INFUSE_NETWORK_ALLOW_PRIVATE_PEERS", Field: "network.allow_private_peers", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Network.AllowPrivatePeers) }},
		{Name: "CO_INFUSE_SOCKS_ENABLED", Field: "socks.enabled", Doc: "true or false",
			set: func(c *Config, v string) error {
				var b bool
				if err := parseBool(v, &b); err != nil {
					return err
				}
				c.SOCKS.Enabled = &b
				return nil
			}},
		{Name: "CO_INFUSE_SOCKS_LISTEN", Field: "socks.listen", Doc: "ip:port",
			set: func(c *Config, v string) error { c.SOCKS.Listen = v; return nil }},
		{Name: "CO_INFUSE_HTTPTUNNEL_ENABLED", Field: "httptunnel.enabled", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.HTTP.Enabled) }},
		{Name: "CO_INFUSE_HTTPTUNNEL_LISTEN", Field: "httptunnel.listen", Doc: "ip:port",
			set: func(c *Config, v string) error { c.HTTP.Listen = v; return nil }},
		{Name: "CO_INFUSE_CIRCUIT_HOPS", Field: "circuit.hops", Doc: "integer 1..8",
			set: func(c *Config, v string) error { return parseInt(v, &c.Circuit.Hops) }},
		{Name: "CO_INFUSE_CIRCUIT_BUILD_TIMEOUT", Field: "circuit.build_timeout", Doc: "duration (30s)",
			set: func(c *Config, v string) error { return parseDuration(v, &c.Circuit.BuildTimeout) }},
		{Name: "CO_INFUSE_CIRCUIT_STREAM_TIMEOUT", Field: "circuit.stream_timeout", Doc: "duration (60s)",
			set: func(c *Config, v string) error { return parseDuration(v, &c.Circuit.StreamTimeout) }},
		{Name: "CO_INFUSE_CIRCUIT_PREEMPTIVE", Field: "circuit.preemptive", Doc: "integer -1..16",
			set: func(c *Config, v string) error { return parseInt(v, &c.Circuit.Preemptive) }},
		{Name: "CO_INFUSE_CIRCUIT_PREDICTED_PORTS", Field: "circuit.predicted_ports", Doc: "comma-separated ports",
			set: func(c *Config, v string) error {
				c.Circuit.PredictedPorts = nil
				for _, s := range splitList(v, ",") {
					p, err := strconv.ParseUint(s, 10, 16)
					if err != nil {
						return fmt.Errorf("%q is not a port", s)
					}
					c.Circuit.PredictedPorts = append(c.Circuit.PredictedPorts, uint16(p))
				}
				return nil
			}},
	}
	vars = append(vars, limitsEnvVars()...)
	return append(vars, []EnvVar{
		{Name: "CO_INFUSE_EXIT_POLICY", Field: "exit.policy", Doc: `semicolon-separated rules ("accept *:443;reject *:*")`,
			set: func(c *Config, v string) error { c.Exit.Policy = splitList(v, ";"); return nil }},
		{Name: "CO_INFUSE_EXIT_ALLOW_PRIVATE_RANGES", Field: "exit.allow_private_ranges", Doc: "comma-separated: loopback, prefixes, addresses",
			set: func(c *Config, v string) error { c.Exit.AllowPrivateRanges = splitList(v, ","); return nil }},
		{Name: "CO_INFUSE_EXIT_DIAL_TIMEOUT", Field: "exit.dial_timeout", Doc: "duration (20s)",
			set: func(c *Config, v string) error { return parseDuration(v, &c.Exit.DialTimeout) }},
		{Name: "CO_INFUSE_DISCOVERY_MODE", Field: "discovery.mode", Doc: "ipfs or private",
			set: func(c *Config, v string) error { c.Discovery.Mode = v; return nil }},
		{Name: "CO_INFUSE_DISCOVERY_BOOTSTRAP", Field: "discovery.bootstrap", Doc: "comma-separated multiaddrs with /p2p/<peer id>",
			set: func(c *Config, v string) error { c.Discovery.Bootstrap = splitList(v, ","); return nil }},
		{Name: "CO_INFUSE_DISCOVERY_ALLOW_SAME_NETWORK", Field: "discovery.allow_same_network", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Discovery.AllowSameNetwork) }},
		{Name: "CO_INFUSE_DISCOVERY_STAKE_PROOF", Field: "discovery.stake_proof", Doc: "true or false",
			set: func(c *Config, v string) error {
				var b bool
				if err := parseBool(v, &b); err != nil {
					return err
				}
				c.Discovery.StakeProof = &b
				return nil
			}},
		{Name: "CO_INFUSE_DISCOVERY_FAMILY", Field: "discovery.family", Doc: "comma-separated peer IDs",
			set: func(c *Config, v string) error { c.Discovery.Family = splitList(v, ","); return nil }},
		{Name: "CO_INFUSE_DISCOVERY_PRICE_SAT_PER_MB", Field: "discovery.price_sat_per_mb", Doc: "relay=N,exit=N",
			set: func(c *Config, v string) error {
				m := map[Role]uint64{}
				for _, kv := range splitList(v, ",") {
					k, val, ok := strings.Cut(kv, "=")
					p, err := strconv.ParseUint(strings.TrimSpace(val), 10, 64)
					if !ok || err != nil {
						return fmt.Errorf("%q is not role=sats", kv)
					}
					m[Role(strings.TrimSpace(k))] = p
				}
				c.Discovery.PriceSatPerMB = m
				return nil
			}},
		{Name: "CO_INFUSE_DISCOVERY_MAX_PRICE_SAT_PER_MB", Field: "discovery.max_price_sat_per_mb", Doc: "integer",
			set: func(c *Config, v string) error { return parseUint(v, &c.Discovery.MaxPriceSatPerMB) }},
		{Name: "CO_INFUSE_PAYMENTS_ENABLED", Field: "payments.enabled", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Payments.Enabled) }},
		{Name: "CO_INFUSE_PAYMENTS_AUTO_BUY", Field: "payments.auto_buy", Doc: "true or false",
			set: func(c *Config, v string) error {
				var b bool
				if err := parseBool(v, &b); err != nil {
					return err
				}
				c.Payments.AutoBuy = &b
				return nil
			}},
		{Name: "CO_INFUSE_PAYMENTS_TARGET_BALANCE_SAT", Field: "payments.target_balance_sat", Doc: "integer",
			set: func(c *Config, v string) error { return parseUint(v, &c.Payments.TargetBalanceSat) }},
		{Name: "CO_INFUSE_PAYMENTS_DAILY_BUDGET_SAT", Field: "payments.daily_budget_sat", Doc: "integer",
			set: func(c *Config, v string) error { return parseUint(v, &c.Payments.DailyBudgetSat) }},
		{Name: "CO_INFUSE_PAYMENTS_MAX_NEW_CIRCUITS_PER_MINUTE", Field: "payments.max_new_circuits_per_minute", Doc: "integer",
			set: func(c *Config, v string) error { return parseInt(v, &c.Payments.MaxNewCircuitsPerMinute) }},
		{Name: "CO_INFUSE_LND_HOST", Field: "lnd.host", Doc: "host:port of LND's gRPC (lncli's rpcserver)",
			set: func(c *Config, v string) error { c.LND.Host = v; return nil }},
		{Name: "CO_INFUSE_LND_TLSCERTPATH", Field: "lnd.tlscertpath", Doc: "path of LND's tls.cert",
			set: func(c *Config, v string) error { c.LND.TLSCertPath = v; return nil }},
		{Name: "CO_INFUSE_LND_MACAROONPATH", Field: "lnd.macaroonpath", Doc: "path of a macaroon (docs/LIGHTNING.md)",
			set: func(c *Config, v string) error { c.LND.MacaroonPath = v; return nil }},
		{Name: "CO_INFUSE_LND_WAIT_FOR_CREDENTIALS", Field: "lnd.wait_for_credentials", Doc: "duration, e.g. 10m: start without LND and wait this long for its cert, macaroon and answer (0: exit at once)",
			set: func(c *Config, v string) error { return parseDuration(v, &c.LND.WaitForCredentials) }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_ENABLED", Field: "mempool.rpc.enabled", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Mempool.RPC.Enabled) }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_LISTEN", Field: "mempool.rpc.listen", Doc: "ip:port of the bitcoind-compatible JSON-RPC port",
			set: func(c *Config, v string) error { c.Mempool.RPC.Listen = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_USER", Field: "mempool.rpc.user", Doc: "rpcuser (with mempool.rpc.password)",
			set: func(c *Config, v string) error { c.Mempool.RPC.User = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_PASSWORD", Field: "mempool.rpc.password", Doc: "rpcpassword",
			set: func(c *Config, v string) error { c.Mempool.RPC.Password = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_COOKIE", Field: "mempool.rpc.cookie", Doc: "path of the .cookie written at start (relative: in the data dir)",
			set: func(c *Config, v string) error { c.Mempool.RPC.Cookie = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_UPSTREAM", Field: "mempool.rpc.upstream", Doc: "host:port of your own bitcoind or btcd RPC, for pass-through",
			set: func(c *Config, v string) error { c.Mempool.RPC.Upstream = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_UPSTREAM_USER", Field: "mempool.rpc.upstream_user", Doc: "the upstream's rpcuser",
			set: func(c *Config, v string) error { c.Mempool.RPC.UpstreamUser = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_UPSTREAM_PASSWORD", Field: "mempool.rpc.upstream_password", Doc: "the upstream's rpcpassword",
			set: func(c *Config, v string) error { c.Mempool.RPC.UpstreamPassword = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_UPSTREAM_COOKIE", Field: "mempool.rpc.upstream_cookie", Doc: "path of the upstream's .cookie",
			set: func(c *Config, v string) error { c.Mempool.RPC.UpstreamCookie = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_RPC_FORWARD_WALLET_SENDS", Field: "mempool.rpc.forward_wallet_sends", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Mempool.RPC.ForwardWalletSends) }},
		{Name: "CO_INFUSE_MEMPOOL_GIVE_UP_AFTER", Field: "mempool.give_up_after", Doc: "duration, e.g. 24h",
			set: func(c *Config, v string) error { return parseDuration(v, &c.Mempool.GiveUpAfter) }},
		{Name: "CO_INFUSE_MEMPOOL_MAX_ATTEMPTS", Field: "mempool.max_attempts", Doc: "integer",
			set: func(c *Config, v string) error { return parseInt(v, &c.Mempool.MaxAttempts) }},
		{Name: "CO_INFUSE_MEMPOOL_BACKEND_HOST", Field: "mempool.backend.host", Doc: "host:port of the delivery node's own bitcoind or btcd RPC",
			set: func(c *Config, v string) error { c.Mempool.Backend.Host = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_BACKEND_USER", Field: "mempool.backend.user", Doc: "the backend's rpcuser",
			set: func(c *Config, v string) error { c.Mempool.Backend.User = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_BACKEND_PASS", Field: "mempool.backend.pass", Doc: "the backend's rpcpassword",
			set: func(c *Config, v string) error { c.Mempool.Backend.Pass = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_BACKEND_COOKIE", Field: "mempool.backend.cookie", Doc: "path of the backend's .cookie",
			set: func(c *Config, v string) error { c.Mempool.Backend.CookiePath = v; return nil }},
		{Name: "CO_INFUSE_MEMPOOL_BACKEND_NOTLS", Field: "mempool.backend.notls", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Mempool.Backend.NoTLS) }},
		{Name: "CO_INFUSE_MEMPOOL_BACKEND_CERT", Field: "mempool.backend.cert", Doc: "path of the backend's TLS cert (btcd)",
			set: func(c *Config, v string) error { c.Mempool.Backend.CertPath = v; return nil }},
		{Name: "CO_INFUSE_CONTROL_ENABLED", Field: "control.enabled", Doc: "true or false",
			set: func(c *Config, v string) error { return parseBool(v, &c.Control.Enabled) }},
		{Name: "CO_INFUSE_CONTROL_LISTEN", Field: "control.listen", Doc: "ip:port of the Tor-compatible control port",
			set: func(c *Config, v string) error { c.Control.Listen = v; return nil }},
		{Name: "CO_INFUSE_CONTROL_COOKIE_FILE", Field: "control.cookie_file", Doc: "path of the SAFECOOKIE cookie (relative: in the data dir)",
			set: func(c *Config, v string) error { c.Control.CookieFile = v; return nil }},
		{Name: "CO_INFUSE_CONTROL_PASSWORD", Field: "control.password", Doc: "HASHEDPASSWORD auth password",
			set: func(c *Config, v string) error { c.Control.Password = v; return nil }},
		{Name: "CO_INFUSE_RENDEZVOUS_ALLOW_NON_LOOPBACK_TARGETS", Field: "rendezvous.allow_non_loopback_targets", Doc: "true or false: let ADD_ONION target another container's IP",
			set: func(c *Config, v string) error { return parseBool(v, &c.Rendezvous.AllowNonLoopbackTargets) }},
		{Name: "CO_INFUSE_TOR_ENABLED", Field: "tor.enabled", Doc: "true or false: run a managed tor",
			set: func(c *Config, v string) error { return parseBool(v, &c.Tor.Enabled) }},
		{Name: "CO_INFUSE_TOR_BINARY", Field: "tor.binary", Doc: "the tor executable (default tor, from PATH)",
			set: func(c *Config, v string) error { c.Tor.Binary = v; return nil }},
		{Name: "CO_INFUSE_TOR_DATA_DIR", Field: "tor.data_dir", Doc: "tor's data directory (relative: in the data dir)",
			set: func(c *Config, v string) error { c.Tor.DataDir = v; return nil }},
		{Name: "CO_INFUSE_LOG_LEVEL", Field: "log.level", Doc: "debug, info, warn or error",
			set: func(c *Config, v string) error { c.Log.Level = v; return nil }},
	}...)
}

// LoadConfigEnv is LoadConfig for containers: it reads config.yaml (from
// EnvConfig if set, else the data directory) and then applies every
// CO_INFUSE_ variable over it, so the environment overrides the file. With
// no file, a config from variables alone starts from DefaultConfig if any
// CO_INFUSE_ variable is set; otherwise it is LoadConfig's "run init"
// error. Errors wrap ErrConfig and name the variable (and the field it
// sets) or the file. lookup is os.LookupEnv outside tests.
//
// When payments are on it also checks that LND's TLS cert and macaroon are
// readable, naming the file and the field or variable, so that a missing
// volume is a one-line config error and not an RPC failure later; with
// lnd.wait_for_credentials set it leaves them to the node's wait.
func LoadConfigEnv(dataDir string, lookup func(string) (string, bool)) (Config, error) {
	path := filepath.Join(dataDir, ConfigFile)
	if p, ok := lookup(EnvConfig); ok && p != "" {
		path = p
	}
	var c Config
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if c, err = decodeConfig(path, raw); err != nil {
			return Config{}, err
		}
	case errors.Is(err, os.ErrNotExist) && anyEnv(lookup):
		if _, set := lookup(EnvConfig); set {
			return Config{}, fmt.Errorf("%w: %s: %s does not exist", ErrConfig, EnvConfig, path)
		}
		// DefaultConfig before its defaults: ApplyDefaults below fills
		// what the variables leave unset (the SOCKS port by the roles
		// they name, Amino's bootstrap peers unless private).
		c.Discovery.Mode = discovery.ModeIPFS
	case errors.Is(err, os.ErrNotExist):
		return Config{}, fmt.Errorf("%w: no config at %s: run `co-infuse init --datadir %s` first, or set %s variables", ErrConfig, path, dataDir, EnvPrefix)
	default:
		return Config{}, fmt.Errorf("%w: read %s: %v", ErrConfig, path, err)
	}
	c.DataDir = dataDir
	fromEnv, err := c.ApplyEnv(lookup)
	if err != nil {
		return Config{}, err
	}
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, nameEnv(err, fromEnv)
	}
	if c.Payments.Enabled && c.LND.WaitForCredentials == 0 { // else the node waits for them
		for _, f := range []struct{ field, path string }{
			{"lnd.tlscertpath", c.LND.TLSCertPath},
			{"lnd.macaroonpath", c.LND.MacaroonPath},
		} {
			p := f.path
			if !filepath.IsAbs(p) {
				p = filepath.Join(dataDir, p)
			}
			fh, err := os.Open(p)
			if err == nil {
				fh.Close()
				continue
			}
			return Config{}, nameEnv(fieldErr(f.field, "%v", err), fromEnv)
		}
	}
	if err := writeEnvIdentity(c, lookup); err != nil {
		return Config{}, err
	}
	return c, nil
}

// ApplyEnv sets every field whose CO_INFUSE_ variable lookup finds (an
// empty value counts as set: it empties a list) and returns the variables
// it used, by field. A value that does not parse is an ErrConfig naming the
// variable.
func (c *Config) ApplyEnv(lookup func(string) (string, bool)) (map[string]string, error) {
	used := map[string]string{}
	for _, e := range EnvVars() {
		if e.set == nil {
			continue
		}
		v, ok := lookup(e.Name)
		if !ok {
			continue
		}
		if err := e.set(c, strings.TrimSpace(v)); err != nil {
			return nil, fmt.Errorf("%w: %s (%s): %v", ErrConfig, e.Name, e.Field, err)
		}
		used[e.Field] = e.Name
	}
	return used, nil
}

// nameEnv adds the variables to a Validate error about fields the
// environment set: "config: socks.listen: … (CO_INFUSE_SOCKS_LISTEN)". A
// field counts when the message names it followed by ":", "[" or a space.
func nameEnv(err error, fromEnv map[string]string) error {
	msg := err.Error()
	var names []string
	for field, name := range fromEnv {
		for _, end := range []string{":", "[", " "} {
			if strings.Contains(msg, field+end) {
				names = append(names, name)
				break
			}
		}
	}
	if len(names) == 0 {
		return err
	}
	slices.Sort(names)
	return fmt.Errorf("%w (%s)", err, strings.Join(names, ", "))
}

// writeEnvIdentity writes EnvIdentityKey into the data directory of a relay
// or exit on first start; a different key already there is an error.
func writeEnvIdentity(c Config, lookup func(string) (string, bool)) error {
	v, ok := lookup(EnvIdentityKey)
	if !ok || v == "" || !c.PersistentIdentity() {
		return nil
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return fmt.Errorf("%w: %s: not base64: %v", ErrConfig, EnvIdentityKey, err)
	}
	if _, err := crypto.UnmarshalPrivateKey(raw); err != nil {
		return fmt.Errorf("%w: %s: not a libp2p private key: %v", ErrConfig, EnvIdentityKey, err)
	}
	path := filepath.Join(c.DataDir, IdentityKeyFile)
	have, err := os.ReadFile(path)
	switch {
	case err == nil && slices.Equal(have, raw):
		return nil
	case err == nil:
		return fmt.Errorf("%w: %s: %s holds a different key; remove one of them", ErrConfig, EnvIdentityKey, path)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: %s: %v", ErrConfig, EnvIdentityKey, err)
	}
	if err := writeFileAtomic(path, raw, 0o600); err != nil {
		return fmt.Errorf("%w: %s: write %s: %v", ErrConfig, EnvIdentityKey, path, err)
	}
	return nil
}

// anyEnv reports whether any variable of EnvVars is set.
func anyEnv(lookup func(string) (string, bool)) bool {
	for _, e := range EnvVars() {
		if _, ok := lookup(e.Name); ok {
			return true
		}
	}
	return false
}

// decodeConfig is ParseConfig's strict decode, naming the file.
func decodeConfig(path string, raw []byte) (Config, error) {
	var c Config
	if err := decodeYAML(raw, &c); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %v", ErrConfig, path, err)
	}
	return c, nil
}

func splitList(v, sep string) []string {
	var out []string
	for _, s := range strings.Split(v, sep) {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func parseBool(v string, dst *bool) error {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*dst = b
	return nil
}

func parseInt(v string, dst *int) error {
	n, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not an integer", v)
	}
	*dst = n
	return nil
}

func parseUint(v string, dst *uint64) error {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a non-negative integer", v)
	}
	*dst = n
	return nil
}

func parseDuration(v string, dst *time.Duration) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as 30s", v)
	}
	*dst = d
	return nil
}
