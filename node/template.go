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

rendezvous:
  # Onion service port targets (ADD_ONION) may be addresses other than
  # loopback: lnd or bitcoind in another container, by its IP.
  allow_non_loopback_targets: {{.Rendezvous.AllowNonLoopbackTargets}}

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

# What other peers can make this node hold when it carries their circuits
# (relay, exit, mempool, rendezvous). Each bound, and what happens when it
# is reached, is in THREAT_MODEL.md (denial of service).
limits:
  # Link streams to neighbours, both directions.
  max_links: {{.Limits.MaxLinks}}
  # Circuits relayed at once, in all and per neighbour.
  max_circuits: {{.Limits.MaxCircuits}}
  max_circuits_per_peer: {{.Limits.MaxCircuitsPerPeer}}
  # Circuit handshakes in progress; more CREATEs are refused.
  max_pending_creates: {{.Limits.MaxPendingCreates}}
  # Streams per circuit (dials in flight included), and destination dials
  # and lookups in flight on the whole node.
  max_streams_per_circuit: {{.Limits.MaxStreamsPerCircuit}}
  max_pending_begins: {{.Limits.MaxPendingBegins}}
  # MiB for relayed circuits, exit streams, their buffered data and cells
  # queued toward neighbours; new circuits and streams are refused past
  # 3/4 of it (at least 64).
  memory_budget_mb: {{.Limits.MemoryBudgetMB}}
  # An exit stream ended normally keeps writing its buffered data to a slow
  # destination for this long.
  end_linger: {{.Limits.EndLinger}}
  # Cells (4 KiB) queued toward one neighbour: refused-CREATE answers per
  # link, one circuit's cells (past it the circuit is destroyed; at least
  # 3072), and all relayed circuits' cells before the largest queues are cut.
  max_link_queue: {{.Limits.MaxLinkQueue}}
  max_circuit_queue: {{.Limits.MaxCircuitQueue}}
  max_queued_cells: {{.Limits.MaxQueuedCells}}
  create_timeout: {{.Limits.CreateTimeout}}
  extend_timeout: {{.Limits.ExtendTimeout}}
  # Opening a destination (dial or DNS lookup).
  begin_timeout: {{.Limits.BeginTimeout}}
  # A relayed circuit, or a link without circuits, silent this long goes.
  idle_timeout: {{.Limits.IdleTimeout}}
  # This node's own circuits send a keep-alive after this long silent
  # (below idle_timeout).
  keep_alive: {{.Limits.KeepAlive}}
  # A neighbour that takes no data for this long loses its link.
  write_timeout: {{.Limits.WriteTimeout}}
  # Keep circuit and stream windows fixed instead of growing them with
  # measured round-trip time.
  fixed_windows: {{.Limits.FixedWindows}}
  # CREATEs admitted per second from one neighbour, and its bucket; then
  # for all neighbours together (checked before any public-key work).
  creates_per_peer_per_second: {{.Limits.CreatesPerPeerPerSecond}}
  create_burst_per_peer: {{.Limits.CreateBurstPerPeer}}
  creates_per_second: {{.Limits.CreatesPerSecond}}
  create_burst: {{.Limits.CreateBurst}}
  # An unpaid circuit that only buys from this node's mint: most cells
  # (4 KiB each) and lifetime.
  mint_only_max_cells: {{.Limits.MintOnlyMaxCells}}
  mint_only_lifetime: {{.Limits.MintOnlyLifetime}}

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
  # Publish a stake proof signed by the lnd section's LND (relays, exits).
  stake_proof: {{deref .Discovery.StakeProof}}
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
  # Most new paid circuits a minute (each prepays its hops).
  max_new_circuits_per_minute: {{.Payments.MaxNewCircuitsPerMinute}}

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
  # A queued transaction not delivered and seen back within this time, or
  # in this many rounds, is given up: dropped with a log line and listed as
  # given up by getprivatebroadcastinfo (send it again to retry).
  give_up_after: {{.Mempool.GiveUpAfter}}
  max_attempts: {{.Mempool.MaxAttempts}}

# Your LND, as in lnd.conf / lncli flags (used when payments are enabled).
lnd:
  host: {{q .LND.Host}}
  tlscertpath: {{q .LND.TLSCertPath}}
  macaroonpath: {{q .LND.MacaroonPath}}
  rpctimeout: {{.LND.RPCTimeout}}
  paymenttimeout: {{.LND.PaymentTimeout}}
  # Wait this long for LND's tls.cert, macaroon and answer (first start
  # beside a new LND, e.g. docker compose): a client starts its ports at
  # once and paid circuits fail with "payments not ready" meanwhile; a relay
  # waits before it starts. 0s = exit at once, naming the missing file.
  wait_for_credentials: {{.LND.WaitForCredentials}}

# A managed tor child process (docs/TOR.md "Managed tor"): started, supervised
# and stopped with the node, SocksPort and ControlPort on loopback with
# cookie auth. On with enabled: true or the tor-gateway role.
tor:
  enabled: {{.Tor.Enabled}}
  # The tor executable (Debian's tor package), a path or a name in PATH.
  binary: {{q .Tor.Binary}}
  # tor's own data directory (relative: in the data dir).
  data_dir: {{q .Tor.DataDir}}
  # Extra torrc lines, appended verbatim.
  torrc:{{range .Tor.Torrc}}
    - {{q .}}{{else}} []{{end}}
  # Also publish the control port's onion services on Tor with the same key
  # (default true when the managed tor is on).
{{- if .Tor.PublishOnions}}
  publish_onions: {{deref .Tor.PublishOnions}}{{else}}
  # publish_onions: true{{end}}

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
