package devnet

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/node"
)

// lndProc is one extra lnd process owned by a test.
type lndProc struct {
	dir, rpc, logPath string
	lncli             string
	cmd               *exec.Cmd
	done              chan error
}

// startTorLnd runs the real lnd binary of the harness on regtest against
// ln's btcd, with the given tor.* flags and a P2P and RPC port of its own.
func startTorLnd(ctx context.Context, t *testing.T, ln *regtest.Network, bins regtest.Bins, name string, torArgs ...string) *lndProc {
	t.Helper()
	ports := freeLoopbackPorts(t, 2)
	host, user, pass, cert := ln.BtcdRPC()
	p := &lndProc{dir: filepath.Join(t.TempDir(), name), rpc: loopbackAddr(ports[1]), lncli: bins.Lncli, done: make(chan error, 1)}
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	p.logPath = filepath.Join(p.dir, "out.log")
	args := append([]string{
		"--lnddir=" + p.dir,
		"--alias=" + name,
		"--noseedbackup",
		"--bitcoin.regtest",
		"--bitcoin.node=btcd",
		"--btcd.rpchost=" + host,
		"--btcd.rpcuser=" + user,
		"--btcd.rpcpass=" + pass,
		"--btcd.rpccert=" + cert,
		"--listen=" + loopbackAddr(ports[0]),
		"--rpclisten=" + p.rpc,
		"--norest",
		"--nobootstrap",
		"--debuglevel=info",
		"--healthcheck.diskspace.attempts=0",
	}, torArgs...)
	lf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bins.Lnd, args...)
	p.cmd.Env = []string{"HOME=" + p.dir}
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start lnd %s: %v", name, err)
	}
	go func() {
		p.done <- p.cmd.Wait()
		lf.Close()
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// pollSlow is poll at one call a second, for conditions that run lncli.
func pollSlow(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// getInfo runs the real lncli getinfo; nil while lnd is not ready.
func (p *lndProc) getInfo(ctx context.Context) map[string]any {
	cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, p.lncli, "--lnddir="+p.dir, "--network=regtest", "--rpcserver="+p.rpc, "getinfo").Output()
	if err != nil {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(out, &m) != nil {
		return nil
	}
	return m
}

func (p *lndProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 16<<10 {
		b = b[len(b)-16<<10:]
	}
	return string(b)
}

// TestE2ELndOnionViaControlPort: the real lnd v0.21.1-beta, run with
// tor.active=1 tor.v3=1 tor.control=<devnet client's control port>
// tor.socks=<its SOCKS port>, creates its onion service through co-infuse
// and shows a <pubkey>@<56>.onion:9735 URI in lncli getinfo; the client
// publishes that address and lnd saved its key. A second lnd with only
// tor.active and tor.socks=<co-infuse> then connects to that URI (lncli
// connect), over the rendezvous path, and opens a channel to it that both
// see active. Restarting co-infuse makes lnd publish the service again
// (its health check reconnects and re-adds the key).
func TestE2ELndOnionViaControlPort(t *testing.T) {
	skipShort(t)
	t.Parallel()
	// The first run on a machine builds lnd (many minutes on a busy one).
	bctx, bcancel := context.WithTimeout(t.Context(), 30*time.Minute)
	bins, err := regtest.EnsureBinaries(bctx, "", nil)
	bcancel()
	if err != nil {
		t.Fatalf("lnd binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	ln, err := regtest.Start(ctx, regtest.Options{Dir: filepath.Join(t.TempDir(), "regtest"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	// The client's SOCKS and control ports are fixed for this run (free
	// ports picked now), so that the restarted client below is found at
	// the same addresses, as a restarted co-infuse would be.
	fixed := freeLoopbackPorts(t, 2)
	d := startTestDevnet(t, Options{Relays: 4, Exits: 1, ControlListen: loopbackAddr(fixed[1]),
		Configure: func(name string, cfg *node.Config) {
			if name == "client" {
				cfg.SOCKS.Listen = loopbackAddr(fixed[0])
			}
		}})

	a := startTorLnd(ctx, t, ln, bins, "carol",
		"--tor.active", "--tor.v3",
		"--tor.control="+d.Client.ControlAddr().String(),
		"--tor.socks="+d.Client.SOCKSAddr().String(),
		// lnd's check of its onion service (GETINFO onions/current), often
		// enough for the restart below (lnd allows no less than a minute).
		"--healthcheck.torconnection.interval=1m",
		"--healthcheck.torconnection.backoff=5s",
		"--healthcheck.torconnection.attempts=10",
	)
	var uri string
	err = pollSlow(ctx, func() bool {
		select {
		case werr := <-a.done:
			a.done <- werr
			return true
		default:
		}
		info := a.getInfo(ctx)
		uris, _ := info["uris"].([]any)
		for _, u := range uris {
			if s, _ := u.(string); strings.Contains(s, ".onion:") {
				uri = s
				return true
			}
		}
		return false
	})
	if err != nil || uri == "" {
		t.Fatalf("lnd shows no .onion URI (%v)\n%s", err, a.logTail())
	}
	pub, hostPort, _ := strings.Cut(uri, "@")
	host := strings.TrimSuffix(hostPort, ":9735")
	if _, err := onionaddr.Parse(host); err != nil || len(pub) != 66 || host == hostPort {
		t.Fatalf("lnd's URI %q: %v", uri, err)
	}
	t.Logf("lncli getinfo: %s", uri)
	var found bool
	for _, s := range d.Client.Rendezvous().Services() {
		found = found || s.Address == host
	}
	if !found {
		t.Fatalf("the devnet client does not publish %s", host)
	}
	saved, err := os.ReadFile(filepath.Join(a.dir, "v3_onion_private_key"))
	if err != nil || !strings.HasPrefix(string(saved), "ED25519-V3:") {
		t.Fatalf("lnd's saved onion key: %q, %v", saved, err)
	}

	// A second lnd, also behind co-infuse (tor.active, SOCKS only), reaches
	// the first at its .onion: the Lightning handshake runs over the
	// rendezvous path.
	b := startTorLnd(ctx, t, ln, bins, "dave", "--tor.active", "--tor.socks="+d.Client.SOCKSAddr().String())
	// Dave connects to carol's .onion over co-infuse (the Lightning
	// handshake runs over the rendezvous path), is funded by the
	// harness's Alice and opens a channel to carol; six blocks later both
	// see it active.
	lndConnectAndOpen(ctx, t, ln, bins, b, a, uri, pub)
	t.Logf("lnd dave connected to %s over co-infuse; channel dave→carol active", host)

	// Restart co-infuse (the client node; same config, ports and data
	// directory): its control connections and services are gone, lnd's
	// health check finds out (EOF, then EPIPE), reconnects, authenticates
	// with the new cookie and adds its service again from its key file.
	cfg := d.Client.Config()
	if err := d.Client.Close(); err != nil {
		t.Fatalf("stop the client: %v", err)
	}
	restarted, err := node.New(cfg, node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	if err := restarted.Start(ctx); err != nil {
		t.Fatalf("restart the client: %v", err)
	}
	t.Cleanup(func() { restarted.Close() })
	err = pollSlow(ctx, func() bool {
		for _, s := range restarted.Rendezvous().Services() {
			if s.Address == host {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("lnd did not publish %s again after co-infuse restarted: %v\n--- carol ---\n%s", host, err, a.logTail())
	}
	t.Logf("after the restart lnd published %s again", host)
}

// cli runs the real lncli against p and returns its output.
func (p *lndProc) cli(ctx context.Context, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	return exec.CommandContext(cctx, p.lncli, append([]string{"--lnddir=" + p.dir, "--network=regtest", "--rpcserver=" + p.rpc}, args...)...).CombinedOutput()
}
