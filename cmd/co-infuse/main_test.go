package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// runCLI runs the command in-process as main would and returns its exit
// code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = cli(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		want []string // in stdout
	}{
		{[]string{"-h"}, []string{"usage: co-infuse <command>", "init", "run", "devnet", "status", "peers", "wallet", "buy", "version"}},
		{[]string{"--help"}, []string{"usage: co-infuse <command>", "status"}},
		{[]string{"help"}, []string{"usage: co-infuse <command>", "status"}},
		{[]string{"help", "wallet"}, []string{"usage: co-infuse wallet", "buy"}},
		{[]string{"help", "wallet", "buy"}, []string{"usage: co-infuse wallet buy", "-sats"}},
	}
	for _, cmd := range []struct {
		args []string
		want []string
	}{
		{[]string{"init"}, []string{"usage: co-infuse init", "-roles", "-force", "-datadir"}},
		{[]string{"run"}, []string{"usage: co-infuse run", "-datadir"}},
		{[]string{"devnet"}, []string{"usage: co-infuse devnet", "-relays", "-lightning"}},
		{[]string{"peers"}, []string{"usage: co-infuse peers", "-json"}},
		{[]string{"wallet"}, []string{"usage: co-infuse wallet", "subcommands:", "buy", "-json"}},
		{[]string{"wallet", "buy"}, []string{"usage: co-infuse wallet buy", "-node", "-sats"}},
		{[]string{"status"}, []string{"usage: co-infuse status", "-json", "-datadir"}},
		{[]string{"version"}, []string{"usage: co-infuse version"}},
	} {
		for _, h := range []string{"-h", "--help", "help"} {
			cases = append(cases, struct {
				args []string
				want []string
			}{append(append([]string{}, cmd.args...), h), cmd.want})
		}
	}
	cases = append(cases, struct {
		args []string
		want []string
	}{[]string{"status", "--datadir", "/nonexistent", "--json", "-h"}, []string{"usage: co-infuse status"}})
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, tc.args...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args  []string
		usage string // on stderr
		msg   string // in the last stderr line
	}{
		{nil, "usage: co-infuse <command>", "no command given"},
		{[]string{"frobnicate"}, "usage: co-infuse <command>", `unknown command "frobnicate"`},
		{[]string{"status", "--frob"}, "usage: co-infuse status", "flag provided but not defined: -frob"},
		{[]string{"status", "extra"}, "usage: co-infuse status", `unexpected argument "extra"`},
		{[]string{"wallet", "sell"}, "usage: co-infuse wallet", `unknown subcommand "sell"`},
		{[]string{"wallet", "buy", "--node", "x"}, "usage: co-infuse wallet buy", "needs --node ID and --sats N"},
		{[]string{"init", "--roles"}, "usage: co-infuse init", "flag needs an argument"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, tc.args...)
			if code != 2 || out != "" {
				t.Fatalf("exit %d, stdout %q; want 2 and nothing", code, out)
			}
			if !strings.Contains(errOut, tc.usage) {
				t.Errorf("stderr lacks usage %q:\n%s", tc.usage, errOut)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if last := lines[len(lines)-1]; !strings.HasPrefix(last, "co-infuse: ") || !strings.Contains(last, tc.msg) {
				t.Errorf("last stderr line %q; want co-infuse: ...%s", last, tc.msg)
			}
		})
	}
}

// dataDir returns a data directory with a config.yaml, as init writes it.
func dataDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	raw, err := node.RenderConfig(node.DefaultConfig(dir))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// serveSocket listens on dir's admin socket with mode perm and answers
// every request with an empty status, counting requests.
func serveSocket(t *testing.T, dir string, perm os.FileMode) *atomic.Int64 {
	t.Helper()
	path := filepath.Join(dir, node.AdminSocket)
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, `{"version":1}`)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return &hits
}

func TestStatusErrors(t *testing.T) {
	t.Parallel()
	type setup func(t *testing.T) (dir string, want string)
	noNode := func(dir string) string {
		return "co-infuse: no co-infuse node is running with --datadir " + dir + " (start one with `co-infuse run --datadir " + dir + "`)"
	}
	notDataDir := func(dir string) string {
		return "co-infuse: " + dir + " is not a co-infuse data directory (create one with `co-infuse init --datadir " + dir + "`)"
	}
	refusing := func(dir, what string) string {
		return "co-infuse: refusing admin socket " + filepath.Join(dir, node.AdminSocket) + ": " + what
	}
	cases := []struct {
		name  string
		setup setup
	}{
		{"missing datadir", func(t *testing.T) (string, string) {
			dir := filepath.Join(t.TempDir(), "nope")
			return dir, notDataDir(dir)
		}},
		{"datadir without config", func(t *testing.T) (string, string) {
			dir := t.TempDir()
			return dir, notDataDir(dir)
		}},
		{"datadir is a file", func(t *testing.T) (string, string) {
			dir := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir, notDataDir(dir)
		}},
		{"no node running", func(t *testing.T) (string, string) {
			dir := dataDir(t)
			return dir, noNode(dir)
		}},
		{"stale socket of a dead node", func(t *testing.T) (string, string) {
			dir := dataDir(t)
			path := filepath.Join(dir, node.AdminSocket)
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
			if err := os.Chmod(path, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir, noNode(dir)
		}},
		{"socket mode 0666", func(t *testing.T) (string, string) {
			dir := dataDir(t)
			hits := serveSocket(t, dir, 0o666)
			t.Cleanup(func() {
				if n := hits.Load(); n != 0 {
					t.Errorf("the command sent %d requests to a socket it should refuse", n)
				}
			})
			return dir, refusing(dir, "mode 0666, want a socket with mode 0600 owned by uid ")
		}},
		{"socket mode 0660", func(t *testing.T) (string, string) {
			dir := dataDir(t)
			serveSocket(t, dir, 0o660)
			return dir, refusing(dir, "mode 0660, want a socket with mode 0600")
		}},
		{"regular file as socket", func(t *testing.T) (string, string) {
			dir := dataDir(t)
			if err := os.WriteFile(filepath.Join(dir, node.AdminSocket), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir, refusing(dir, "a regular file, not a socket")
		}},
	}
	for _, tc := range cases {
		for _, args := range [][]string{{"status"}, {"status", "--json"}, {"peers"}, {"wallet"}} {
			t.Run(tc.name+"/"+strings.Join(args, " "), func(t *testing.T) {
				t.Parallel()
				dir, want := tc.setup(t)
				code, out, errOut := runCLI(t, append(args, "--datadir", dir)...)
				if code != 1 || out != "" {
					t.Errorf("exit %d, stdout %q; want 1 and nothing", code, out)
				}
				if strings.Count(errOut, "\n") != 1 || !strings.HasPrefix(errOut, want) {
					t.Errorf("stderr %q\nwant one line starting %q", errOut, want)
				}
			})
		}
	}
}

func TestStatusRunningClient(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := node.DefaultConfig(dir)
	cfg.Roles = []node.Role{node.RoleClient}
	cfg.Discovery.Mode = "private"
	cfg.Discovery.Bootstrap = nil
	cfg.SOCKS.Listen = "127.0.0.1:0"
	cfg.ApplyDefaults()
	raw, err := node.RenderConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	n, err := node.New(cfg, node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := n.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	code, out, errOut := runCLI(t, "status", "--json", "--datadir", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("status --json: exit %d, stderr %q", code, errOut)
	}
	var st node.Status
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if st.Version != 1 {
		t.Errorf("version %d, want 1", st.Version)
	}
	if st.ID != n.ID().String() {
		t.Errorf("id %q, want %q", st.ID, n.ID())
	}
	if len(st.Roles) != 1 || st.Roles[0] != node.RoleClient {
		t.Errorf("roles %v, want [client]", st.Roles)
	}
	if st.SOCKS != n.SOCKSAddr().String() || st.HTTPTunnel != "" {
		t.Errorf("socks %q http_tunnel %q; want %q and \"\"", st.SOCKS, st.HTTPTunnel, n.SOCKSAddr())
	}
	if len(st.Addrs) == 0 || !strings.Contains(st.Addrs[0], n.ID().String()) {
		t.Errorf("addrs %v lack /p2p/%s", st.Addrs, n.ID())
	}
	if st.UptimeSec < 0 {
		t.Errorf("uptime %d", st.UptimeSec)
	}
	if st.Client == nil || st.Client.Circuits == nil || len(st.Client.Circuits) != 0 || st.Client.Wallet != nil {
		t.Errorf("client %+v; want no circuits (an empty list) and no wallet", st.Client)
	}
	if st.Relay != nil {
		t.Errorf("relay %+v on a client-only node", st.Relay)
	}
	// The keys scripts rely on are present even when empty.
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &keys); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "id", "roles", "addrs", "socks", "http_tunnel", "uptime_sec", "client"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("status JSON lacks %q: %s", k, out)
		}
	}

	code, out, errOut = runCLI(t, "status", "--datadir", dir)
	if code != 0 || errOut != "" {
		t.Fatalf("status: exit %d, stderr %q", code, errOut)
	}
	for _, w := range []string{n.ID().String() + " (this run only", "roles", "client", n.SOCKSAddr().String(), "circuits: 0 open"} {
		if !strings.Contains(out, w) {
			t.Errorf("status output lacks %q:\n%s", w, out)
		}
	}
}

func TestPrintStatus(t *testing.T) {
	t.Parallel()
	st := node.Status{
		Version: 1, ID: "12D3KooWSelf", Roles: []node.Role{node.RoleClient, node.RoleRelay},
		Addrs: []string{"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWSelf"}, SOCKS: "127.0.0.1:9050", UptimeSec: 3723,
		Payments: "waiting for lnd macaroon at /lnd/admin.macaroon",
		Client: &node.ClientStatus{
			Prebuilt: 1,
			Circuits: []node.CircuitStatus{{
				ID: 18446744073709551615, Isolation: "alice", Port: 443, AgeSec: 90, Dirty: true, Streams: 2,
				Hops: []node.HopStatus{
					{Peer: "12D3KooWGuard", Role: "guard", BytesCarried: 5_300_000, BytesPaidFor: 8_000_000, SatsPaid: 8},
					{Peer: "12D3KooWMiddle", Role: "relay", BytesPaidFor: 8_000_000, SatsPaid: 8},
					{Peer: "12D3KooWExit", Role: "exit", BytesCarried: 5_200_000, BytesPaidFor: 16_500_000, SatsPaid: 33},
				},
			}},
			Wallet: &node.WalletStatus{BudgetUsedSat: 1200, BudgetLimitSat: 10000},
			OnionServices: []node.OnionServiceStatus{
				{Address: "aaaa.onion", Ports: []uint16{9735}, Intros: 3, Published: true, Tor: "published"},
				{Address: "bbbb.onion", Ports: []uint16{8333, 80}, Intros: 1, Tor: "error: tor control: connection refused"},
				{Address: "cccc.onion", Ports: []uint16{80}},
			},
		},
		Relay: &node.RelayStatus{
			Sessions: 3, SessionsTotal: 17, BytesCarried: 52_400_000, SatsEarned: 210,
			ByRole: map[string]node.RoleStatus{
				"relay": {Sessions: 2, BytesCarried: 40_000_000, SatsEarned: 100},
				"exit":  {Sessions: 1, BytesCarried: 12_400_000, SatsEarned: 110},
			},
		},
	}
	var b bytes.Buffer
	if err := printStatus(&b, st); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, w := range []string{
		"uptime        1h2m3s",
		"http connect  off",
		"payments      waiting for lnd macaroon at /lnd/admin.macaroon\n",
		"circuits: 1 open, 1 pre-built",
		"18446744073709551615  alice (dirty)  443   1m30s  2        guard  12D3KooWGuard   5.3 MB   8.0 MB    8",
		"                                                           exit   12D3KooWExit    5.2 MB   16.5 MB   33",
		"wallet: 1200 of 10000 sats",
		"onion services: 3",
		"aaaa.onion  ports 9735     intros 3  co-infuse: published  tor: published\n",
		"bbbb.onion  ports 8333,80  intros 1  co-infuse: pending    tor: error: tor control: connection refused\n",
		"cccc.onion  ports 80       intros 0  co-infuse: pending    tor: off\n",
		"relay: 3 sessions open, 17 since start; 52.4 MB carried, 210 sats earned",
		"exit   1     12.4 MB  110",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// The JSON form keeps every digit of a 64-bit circuit ID.
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"id":"18446744073709551615"`)) {
		t.Errorf("circuit id not a decimal string: %s", raw)
	}
	var back node.Status
	if err := json.Unmarshal(raw, &back); err != nil || back.Client.Circuits[0].ID != st.Client.Circuits[0].ID {
		t.Errorf("round trip: %v, %+v", err, back.Client)
	}
}

// TestInitIdentity: init writes identity and onion keys for a relay and
// prints its peer ID; for a client-only node it writes no key, says the
// peer ID is per run, and leaves an old identity.key alone.
func TestInitIdentity(t *testing.T) {
	t.Parallel()
	tests := []struct {
		roles    string
		oldKey   bool
		keys     bool     // identity.key and onion.key exist afterwards
		want     []string // in stdout
		dontWant string
	}{
		{"relay", false, true, []string{"peer id 12D3KooW"}, "new each run"},
		{"client,exit", false, true, []string{"peer id 12D3KooW"}, "new each run"},
		{"client", false, false, []string{"peer id: new each run"}, "left in place"},
		{"client", true, false, []string{"peer id: new each run", "identity.key is left in place and not used"}, "peer id 12D3KooW"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s old key %v", tc.roles, tc.oldKey), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "data")
			keyPath := filepath.Join(dir, node.IdentityKeyFile)
			var old []byte
			if tc.oldKey {
				if _, err := node.LoadIdentity(dir); err != nil {
					t.Fatal(err)
				}
				old, _ = os.ReadFile(keyPath)
			}
			code, out, errOut := runCLI(t, "init", "--datadir", dir, "--roles", tc.roles)
			if code != 0 {
				t.Fatalf("init: exit %d, stderr %q", code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, tc.dontWant) {
				t.Errorf("stdout has %q:\n%s", tc.dontWant, out)
			}
			key, err := os.ReadFile(keyPath)
			_, onionErr := os.Stat(filepath.Join(dir, node.OnionKeyFile))
			switch {
			case tc.keys && (err != nil || onionErr != nil):
				t.Errorf("keys not written: %v, %v", err, onionErr)
			case !tc.keys && !tc.oldKey && !os.IsNotExist(err):
				t.Errorf("client-only init wrote %s (%v)", node.IdentityKeyFile, err)
			case !tc.keys && !os.IsNotExist(onionErr):
				t.Errorf("client-only init wrote %s (%v)", node.OnionKeyFile, onionErr)
			case tc.oldKey && !bytes.Equal(key, old):
				t.Errorf("init changed the old %s", node.IdentityKeyFile)
			}
		})
	}
}

// TestRunWaitForLNDExpires: with lnd.wait_for_credentials set, run starts
// although LND's cert and macaroon are missing, and when the wait
// expires it exits 4 with one line naming the missing file.
func TestRunWaitForLNDExpires(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := node.DefaultConfig(dir)
	cfg.Discovery.Mode = "private"
	cfg.Discovery.Bootstrap = nil
	cfg.SOCKS.Listen = "127.0.0.1:0"
	cfg.Payments.Enabled = true
	cfg.LND.Host = "127.0.0.1:1"
	cfg.LND.TLSCertPath = filepath.Join(dir, "lnd", "tls.cert")
	cfg.LND.MacaroonPath = filepath.Join(dir, "lnd", "admin.macaroon")
	cfg.LND.WaitForCredentials = 500 * time.Millisecond
	cfg.ApplyDefaults()
	raw, err := node.RenderConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "run", "--datadir", dir)
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	last := lines[len(lines)-1]
	if code != exitStart || !strings.HasPrefix(last, "co-infuse: ") || !strings.Contains(last, "lnd.tlscertpath "+cfg.LND.TLSCertPath) ||
		!strings.Contains(last, "lnd.wait_for_credentials") {
		t.Fatalf("run: exit %d, stderr %q; want exit %d and one line naming %s", code, errOut, exitStart, cfg.LND.TLSCertPath)
	}
	if !strings.Contains(errOut, "SOCKS5 on 127.0.0.1:") {
		t.Errorf("SOCKS did not start during the wait: %q", errOut)
	}
}
