package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"text/template"
)

// configTemplate is the commented config.yaml that `co-infuse init` and
// `co-infuse devnet` write. Every key is present with its value, so a user
// sees what can be changed; the comments repeat the units and defaults of
// Config.
var configTemplate = template.Must(template.New("config").Funcs(template.FuncMap{
	"q":     func(s string) string { return fmt.Sprintf("%q", s) },
	"deref": func(b *bool) bool { return b != nil && *b },
}).Parse(`# co-infuse node configuration. Edit and restart ` + "`co-infuse run`" + `.
# Durations use Go syntax (30s, 10m). Listeners default to loopback.

# What this node does: client (SOCKS/HTTP front ends, builds circuits),
# relay (forwards other people's circuits), exit (opens TCP connections).
roles:{{range .Roles}}
  - {{.}}{{end}}

network:
  # libp2p listen multiaddrs. Relays reachable by others need a public address.
  listen:{{range .Network.Listen}}
    - {{q .}}{{end}}
  # Addresses to advertise instead of the listen addresses (empty = listen).
  announce:{{range .Network.Announce}}
    - {{q .}}{{else}} []{{end}}
  # Cap on libp2p connections (resource manager).
  max_conns: {{.Network.MaxConns}}
  # Dial peers on private, loopback and link-local addresses (private
  # deployments and loopback test networks only).
  allow_private_peers: {{.Network.AllowPrivatePeers}}

# Tor-compatible SOCKS5 port: point bitcoind -proxy / lnd tor.socks / curl here.
socks:
  enabled: {{.SOCKSEnabled}}
  listen: {{q .SOCKS.Listen}}

# HTTP CONNECT proxy port (like Tor's HTTPTunnelPort).
httptunnel:
  enabled: {{.HTTP.Enabled}}
  listen: {{q .HTTP.Listen}}

# Tor-compatible control port: bitcoind -torcontrol / lnd tor.control create
# their onion services here (off by default, like Tor's ControlPort).
control:
  enabled: {{.Control.Enabled}}
  listen: {{q .Control.Listen}}
  # Cookie for COOKIE/SAFECOOKIE auth, rewritten at every start ("" =
  # <datadir>/control_auth_cookie, "off" = no cookie auth).
  cookie_file: {{q .Control.CookieFile}}
  # HASHEDPASSWORD auth (bitcoind -torpassword, lnd tor.password); "" = off.
  password: {{q .Control.Password}}
  # Anyone local may connect without a secret (Tor's NULL auth).
  null_auth: {{.Control.NullAuth}}

circuit:
  # Hops per circuit including the exit (1..8).
  hops: {{.Circuit.Hops}}
  build_timeout: {{.Circuit.BuildTimeout}}
  stream_timeout: {{.Circuit.StreamTimeout}}
  # Open isolated circuits kept at once (one per SOCKS username/password pair).
  max_isolated: {{.Circuit.MaxIsolated}}
  # Close an isolated circuit after this long without streams.
  idle_close: {{.Circuit.IdleClose}}
  # A circuit takes new streams for this long after its first one (Tor's
  # MaxCircuitDirtiness); later streams get a new circuit.
  max_dirtiness: {{.Circuit.MaxDirtiness}}
  # Clean circuits kept built ahead so a connection with fresh credentials
  # does not wait for a build (-1: none). Each holds a circuit at its hops.
  preemptive: {{.Circuit.Preemptive}}
  # Ports always kept covered by pre-built circuits; by default only the
  # ports used in the last hour are (an idle client then builds nothing).
  predicted_ports: [{{range $i, $p := .Circuit.PredictedPorts}}{{if $i}}, {{end}}{{$p}}{{end}}]

exit:
  # Addresses that are not on the public internet are refused FIRST,
  # whatever the rules below say: private (10/8, 172.16/12, 192.168/16,
  # fc00::/7, fec0::/10), loopback, link-local (169.254/16 incl. cloud
  # metadata, fe80::/10), CGNAT (100.64/10), multicast, unspecified,
  # broadcast, documentation, benchmarking and reserved ranges, and their
  # IPv4-mapped, NAT64 (64:ff9b::/96, 64:ff9b:1::/48) and 6to4 forms.
  # Rules checked next, first match wins, then "reject *:25", "accept *:*":
  #   - "accept *:443"
  #   - "reject *:*"
  policy:{{range .Exit.Policy}}
    - {{q .}}{{else}} []{{end}}
  # Open non-public ranges to this exit (the rules then judge them):
  # "loopback" (127.0.0.0/8 and ::1), or prefixes such as "10.8.0.0/16".
  # Only for devnet and private deployments: anyone with a circuit reaches
  # what you open here.
  allow_private_ranges:{{range .Exit.AllowPrivateRanges}}
    - {{q .}}{{else}} []{{end}}
  dial_timeout: {{.Exit.DialTimeout}}

discovery:
  # ipfs: find other co-infuse nodes through the public IPFS DHT (Amino,
  #   /ipfs/kad/1.0.0), joined through its public bootstrap peers. What
  #   ` + "`co-infuse init`" + ` writes.
  # private: a co-infuse-only DHT (/co-infuse/kad/1.0.0) joined only through
  #   the bootstrap peers below: devnet, tests, private deployments. Nodes
  #   of one private network must all say private; give every node but the
  #   first the address of one that is already running.
  # A config without this key is private, so files from before ipfs became
  # the default keep their network.
  mode: {{.Discovery.Mode}}
  # Multiaddrs ending in /p2p/<peer id>. In ipfs mode an empty list means the
  # public IPFS bootstrap peers (listed here by init); in private mode it
  # means none (this node is the first of its network).
  bootstrap:{{range .Discovery.Bootstrap}}
    - {{q .}}{{else}} []{{end}}
  # Allow two hops on one IPv4 /16 or in one family (loopback test nets only).
  allow_same_network: {{.Discovery.AllowSameNetwork}}
  # Peer IDs of your other nodes, so clients never put two of them in a path.
  family:{{range .Discovery.Family}}
    - {{q .}}{{else}} []{{end}}
  # What this node charges, in sat per MB relayed, per role.
  price_sat_per_mb:{{range $r, $p := .Discovery.PriceSatPerMB}}
    {{$r}}: {{$p}}{{end}}
  # The most this client pays one hop, in sat per MB.
  max_price_sat_per_mb: {{.Discovery.MaxPriceSatPerMB}}

# Chaumian vouchers bought over Lightning. Relays and exits sell vouchers
# for their own bandwidth (invoiced by their LND); clients buy them from the
# user's LND automatically, within the budget below.
payments:
  enabled: {{.Payments.Enabled}}
  auto_buy: {{deref .Payments.AutoBuy}}
  # Voucher balance bought ahead for each node in use or likely to be, in sats.
  target_balance_sat: {{.Payments.TargetBalanceSat}}
  # Most spent on vouchers in any 24 hours, routing fees included, in sats.
  daily_budget_sat: {{.Payments.DailyBudgetSat}}
  # Mean time between background voucher purchases (random, exponential).
  refill_mean: {{.Payments.RefillMean}}

# Transaction delivery. A node with the mempool role hands the transactions
# clients deliver to its own bitcoind or btcd (backend); a client with
# rpc.enabled serves bitcoind's JSON-RPC (sendrawtransaction goes through
# circuits, other methods to upstream if set).
mempool:
  backend:
    host: {{q .Mempool.Backend.Host}}
    user: {{q .Mempool.Backend.User}}
    pass: {{q .Mempool.Backend.Pass}}
    cookie: {{q .Mempool.Backend.CookiePath}}
    notls: {{.Mempool.Backend.NoTLS}}
    cert: {{q .Mempool.Backend.CertPath}}
  rpc:
    enabled: {{.Mempool.RPC.Enabled}}
    listen: {{q .Mempool.RPC.Listen}}
    user: {{q .Mempool.RPC.User}}
    password: {{q .Mempool.RPC.Password}}
    # bitcoind's .cookie, rewritten at each start (relative: in the data dir).
    cookie: {{q .Mempool.RPC.Cookie}}
    upstream: {{q .Mempool.RPC.Upstream}}
    upstream_user: {{q .Mempool.RPC.UpstreamUser}}
    upstream_password: {{q .Mempool.RPC.UpstreamPassword}}
    upstream_cookie: {{q .Mempool.RPC.UpstreamCookie}}
    # Forward sendtoaddress, sendmany, send, sendall and bumpfee to the
    # upstream: only for an upstream run with -walletbroadcast=0 (else its
    # wallet broadcasts them in the clear). Default false: refused.
    forward_wallet_sends: {{.Mempool.RPC.ForwardWalletSends}}
  # Transactions the outbox holds at most.
  max_queued: {{.Mempool.MaxQueued}}
  # How long sendrawtransaction waits for a first verdict before it returns
  # the txid and leaves the transaction queued.
  verdict_wait: {{.Mempool.VerdictWait}}

# Your LND, as in lnd.conf / lncli flags (used when payments are enabled).
lnd:
  host: {{q .LND.Host}}
  tlscertpath: {{q .LND.TLSCertPath}}
  macaroonpath: {{q .LND.MacaroonPath}}
  rpctimeout: {{.LND.RPCTimeout}}
  paymenttimeout: {{.LND.PaymentTimeout}}

log:
  # debug, info, warn or error.
  level: {{.Log.Level}}
`))

// RenderConfig returns c as commented YAML that ParseConfig reads back to an
// equal Config.
func RenderConfig(c Config) ([]byte, error) {
	var b bytes.Buffer
	if err := configTemplate.Execute(&b, &c); err != nil {
		return nil, fmt.Errorf("render config: %w", err)
	}
	return b.Bytes(), nil
}

// WriteConfig renders c and writes it to config.yaml in c.DataDir (created
// 0700 if missing) with mode 0600, atomically: a crash leaves the old file
// or the new one, never half of either.
func WriteConfig(c Config) error {
	raw, err := RenderConfig(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(c.DataDir, ConfigFile), raw, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(c.DataDir, ConfigFile), err)
	}
	return nil
}
