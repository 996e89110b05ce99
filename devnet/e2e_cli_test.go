package devnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

// buildCLI builds cmd/co-infuse into the test's temp dir.
func buildCLI(ctx context.Context, t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "co-infuse")
	cmd := exec.CommandContext(ctx, goBin, "build", "-o", bin, "github.com/co-infuse/co-infuse/cmd/co-infuse")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build cmd/co-infuse: %v\n%s", err, out)
	}
	return bin
}

// runCLI runs the binary and returns its exit code, stdout and stderr.
func runCLI(ctx context.Context, t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin"}
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &ee) && ctx.Err() == nil:
		return ee.ExitCode(), out.String(), errOut.String()
	default:
		t.Fatalf("co-infuse %v: %v (stderr %q)", args, err, errOut.String())
		return -1, "", ""
	}
}

// TestE2ECLI smoke-tests the co-infuse binary: init writes a config that
// parses back with the asked-for roles and secret files only the owner can
// read, and bad input is refused with an error naming the field.
func TestE2ECLI(t *testing.T) {
	skipShort(t)
	t.Parallel()
	buildCtx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	bin := buildCLI(buildCtx, t)
	cancel()
	// Parallel subtests wait for a free slot behind the package's other
	// long tests, so each one's deadline starts when it starts running.
	started := func(t *testing.T, d time.Duration) context.Context {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), d)
		t.Cleanup(cancel)
		return ctx
	}

	t.Run("init relay exit", func(t *testing.T) {
		ctx := started(t, 2*time.Minute)
		dir := filepath.Join(t.TempDir(), "data")
		code, stdout, stderr := runCLI(ctx, t, bin, "init", "--datadir", dir, "--roles", "relay,exit")
		if code != 0 {
			t.Fatalf("init: exit %d: %s", code, stderr)
		}
		cfg, err := node.LoadConfig(dir)
		if err != nil {
			t.Fatalf("config.yaml written by init does not load: %v", err)
		}
		if want := []node.Role{node.RoleRelay, node.RoleExit}; !reflect.DeepEqual(cfg.Roles, want) {
			t.Fatalf("roles %v, want %v", cfg.Roles, want)
		}
		if cfg.SOCKSEnabled() || cfg.HTTP.Enabled {
			t.Fatalf("a relay/exit-only config enables front ends: socks %v http %v", cfg.SOCKSEnabled(), cfg.HTTP.Enabled)
		}
		for _, f := range []string{node.ConfigFile, node.IdentityKeyFile, node.OnionKeyFile} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil {
				t.Fatalf("init did not write %s: %v", f, err)
			}
			if m := fi.Mode().Perm(); m != 0o600 {
				t.Fatalf("%s has mode %v, want 0600", f, m)
			}
		}
		if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("data dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
		}
		// The peer ID printed is the one the identity key gives.
		id, err := node.LoadIdentity(dir)
		if err != nil {
			t.Fatal(err)
		}
		pid, err := peer.IDFromPrivateKey(id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(stdout, "peer id "+pid.String()) {
			t.Fatalf("init printed %q, want peer id %s", stdout, pid)
		}
		// A second init keeps the existing config and keys.
		key, _ := os.ReadFile(filepath.Join(dir, node.IdentityKeyFile))
		code, _, stderr = runCLI(ctx, t, bin, "init", "--datadir", dir, "--roles", "client")
		if code == 0 || !strings.Contains(stderr, "exists") {
			t.Fatalf("second init without --force: exit %d, stderr %q; want a refusal", code, stderr)
		}
		if again, _ := os.ReadFile(filepath.Join(dir, node.IdentityKeyFile)); !bytes.Equal(again, key) {
			t.Fatal("second init replaced the identity key")
		}
	})

	t.Run("bad roles flag", func(t *testing.T) {
		ctx := started(t, time.Minute)
		dir := filepath.Join(t.TempDir(), "data")
		code, _, stderr := runCLI(ctx, t, bin, "init", "--datadir", dir, "--roles", "relay,wizard")
		if code == 0 || !strings.Contains(stderr, "roles[1]") {
			t.Fatalf("init --roles relay,wizard: exit %d, stderr %q; want an error naming roles[1]", code, stderr)
		}
		if _, err := os.Stat(filepath.Join(dir, node.ConfigFile)); err == nil {
			t.Fatal("init wrote a config for bad roles")
		}
	})

	t.Run("devnet with lightning then SIGINT", func(t *testing.T) {
		cliDevnet(started(t, 8*time.Minute), t, bin)
	})

	// run refuses a config with one bad field and names it. Listen
	// addresses stay on loopback so that a config wrongly accepted would
	// reach nothing but this machine (and the test would time out).
	bad := []struct{ name, yaml, field string }{
		{"hops", "roles: [relay]\ncircuit:\n  hops: 99\n", "circuit.hops"},
		{"log level", "roles: [relay]\nlog:\n  level: shouty\n", "log.level"},
		{"unknown key", "roles: [relay]\ncircut:\n  hops: 3\n", "config.yaml"},
		{"socks listen", "roles: [client]\nsocks:\n  listen: \"loopback please\"\n", "socks.listen"},
		{"bootstrap", "roles: [relay]\ndiscovery:\n  bootstrap: [\"/ip4/127.0.0.1/tcp/1\"]\n", "discovery.bootstrap[0]"},
		{"max conns", "roles: [relay]\nnetwork:\n  max_conns: 2\n", "network.max_conns"},
		{"exit policy", "roles: [exit]\nexit:\n  policy: [\"accept everything please\"]\n", "exit.policy"},
	}
	for _, tc := range bad {
		t.Run("run bad "+tc.name, func(t *testing.T) {
			runCtx := started(t, 30*time.Second)
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, node.ConfigFile), []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			code, _, stderr := runCLI(runCtx, t, bin, "run", "--datadir", dir)
			if code == 0 || !strings.Contains(stderr, tc.field) {
				t.Fatalf("run with %q: exit %d, stderr %q; want an error naming %s", tc.yaml, code, stderr, tc.field)
			}
		})
	}
}

// cliDevnet runs `co-infuse devnet` as a newcomer would (its default
// --lightning: a regtest btcd and two lnd beside the nodes, vouchers bought
// over Lightning), on kernel-chosen loopback ports; fetches a page and 1 MiB
// with curl through the SOCKS port it prints, then sends SIGINT: the command
// must stop the network and its daemons and exit 0.
func cliDevnet(ctx context.Context, t *testing.T, bin string) {
	// The daemons come from this machine's cache, built once (by the first
	// run of this test if need be) rather than inside the timed devnet start.
	if _, err := regtest.EnsureBinaries(ctx, "", nil); err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	cache, err := regtest.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "devnet", "--datadir", filepath.Join(t.TempDir(), "devnet"),
		"--socks", "127.0.0.1:0", "--http", "127.0.0.1:0", "--web", "127.0.0.1:0", "--rpc", "127.0.0.1:0", "--control", "127.0.0.1:0")
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=/usr/bin:/bin", "COINFUSE_DAEMON_CACHE=" + cache}
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errOut bytes.Buffer
	cmd.Stderr = &errOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start devnet: %v", err)
	}
	exited := make(chan error, 1)
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // nobody reads any more; keep draining the pipe
			}
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	stopped := false
	defer func() {
		if !stopped {
			cmd.Process.Kill()
			<-exited
		}
	}()

	var socks, web string
	// Regtest setup (500 blocks, a funded channel) takes about a minute.
	upCtx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	for socks == "" || web == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("devnet ended before printing its addresses; stderr: %s", errOut.String())
			}
			if a, ok := strings.CutPrefix(l, "SOCKS5"); ok {
				socks = strings.TrimSpace(a)
			}
			if a, ok := strings.CutPrefix(l, "demo web server on http://"); ok {
				web = strings.TrimSuffix(a, "/")
			}
		case <-upCtx.Done():
			t.Fatalf("devnet printed no SOCKS and web addresses in time; stderr: %s", errOut.String())
		}
	}
	r := mustCurl(ctx, t, "--max-time", "50", "--socks5-hostname", socks, "http://"+web+"/")
	if !strings.HasPrefix(r.stdout, "Hello from the co-infuse devnet") {
		t.Fatalf("demo page through the devnet binary: %q", r.stdout)
	}
	out := filepath.Join(t.TempDir(), "bytes")
	mustCurl(ctx, t, "--max-time", "50", "--socks5-hostname", socks, "-o", out, "http://"+web+"/bytes/1048576")
	if fi, err := os.Stat(out); err != nil || fi.Size() != 1<<20 {
		t.Fatalf("1 MiB through the devnet binary: %v %v", fi, err)
	}

	// With Lightning, devnet runs delivery nodes and prints the client's
	// JSON-RPC port and cookie: the printed line works.
	var rpcAddr, cookie string
	for rpcAddr == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("devnet printed no JSON-RPC line; stderr: %s", errOut.String())
			}
			if a, ok := strings.CutPrefix(l, "JSON-RPC"); ok {
				f := strings.Fields(a)
				if len(f) < 3 || f[1] != "(cookie" {
					t.Fatalf("JSON-RPC line %q", l)
				}
				rpcAddr, cookie = f[0], strings.TrimSuffix(f[2], ";")
			}
		case <-upCtx.Done():
			t.Fatalf("devnet printed no JSON-RPC line in time; stderr: %s", errOut.String())
		}
	}
	auth, err := os.ReadFile(cookie)
	if err != nil {
		t.Fatalf("printed cookie: %v", err)
	}
	r = mustCurl(ctx, t, "--max-time", "20", "--user", strings.TrimSpace(string(auth)),
		"--data-binary", `{"jsonrpc":"1.0","id":1,"method":"getprivatebroadcastinfo","params":[]}`, "http://"+rpcAddr+"/")
	if !strings.Contains(r.stdout, `"transactions":[]`) {
		t.Fatalf("getprivatebroadcastinfo through the printed JSON-RPC port: %s", r.stdout)
	}

	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	// lnd gets up to 30 s to stop after SIGTERM.
	stopCtx, cancelStop := context.WithTimeout(ctx, time.Minute)
	defer cancelStop()
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("devnet after SIGINT: %v; stderr: %s", err, errOut.String())
		}
	case <-stopCtx.Done():
		t.Fatalf("devnet still running a minute after SIGINT; stderr: %s", errOut.String())
	}
}
