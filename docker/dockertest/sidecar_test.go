package dockertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestContainerSidecarLND runs compose.sidecar.yml's co-infuse service
// beside a real lnd: a regtest lnd in a container, run as root as lnd's own
// image runs it, writing its tls.cert and admin.macaroon (mode 0640) into
// the compose project's lnd-creds volume as compose.sidecar.yml's lnd
// service does. co-infuse, user 10001, reads both from the read-only
// volume and starts its wallet on that lnd: its status shows the wallet,
// which it only runs once lnd answered with that cert and macaroon.
//
// It is a first start: co-infuse is started before lnd, with the volume
// still empty, and waits (CO_INFUSE_LND_WAIT_FOR_CREDENTIALS), its status
// saying so. lnd then starts with the file's tor settings (tor.active,
// tor.v3, tor.socks and tor.control at co-infuse's fixed address,
// tor.targetipaddress its own) and the control port's cookie from the
// co-infuse-control volume, creates its wallet, finds the control port up
// without any restart or extra unlock, and publishes its onion address through
// co-infuse's control port, so lnd's getinfo advertises
// <id>.onion:9735 and co-infuse's own status lists that same address
// among the onion services it publishes, with virtual port 9735. (With no
// relays in this test the service gets no introduction points: that lnd is
// reachable at the address is the rendezvous tests' part, not this one's.)
//
// The file's bitcoind and lnd services are not started (their images come
// from a registry); the compose override only attaches co-infuse to the
// lnd's network and keeps discovery private (no public bootstrap from a
// test).
func TestContainerSidecarLND(t *testing.T) {
	// About 8 minutes on a 2-core machine (its own btcd and lnd): kept
	// out of the default run to hold CI's budget; run it with
	// CO_INFUSE_DOCKERTEST_SIDECAR=1.
	if os.Getenv("CO_INFUSE_DOCKERTEST_SIDECAR") != "1" {
		t.Skip("set CO_INFUSE_DOCKERTEST_SIDECAR=1 to run the sidecar beside a real lnd (about 8 minutes)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	begin := time.Now()
	composeCmd := needDocker(t)
	img := image(t)
	ln := startLightning(t, ctx)

	project := "coinfuse-sc" + uniq()
	// The file's network, on a /16 no Docker network here uses; co-infuse
	// is .0.10 on it and lnd .0.11, as in the file.
	net := fmt.Sprintf("10.%d", freeSlash16s(t, ctx, 1)[0])
	coinfuseIP, lndIP := net+".0.10", net+".0.11"
	override := filepath.Join(t.TempDir(), "override.yml")
	if err := os.WriteFile(override, []byte(fmt.Sprintf(`version: "2.4"
services:
  co-infuse:
    restart: "no"
    networks:
      default:
        ipv4_address: %s
      ln: {}
    environment:
      CO_INFUSE_DISCOVERY_MODE: private
      CO_INFUSE_NETWORK_LISTEN: /ip4/0.0.0.0/tcp/4001
networks:
  ln:
    external: true
    name: %s
`, coinfuseIP, ln.network)), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &cnet{t: t,
		compose: append(slices.Clone(composeCmd), "-p", project,
			"-f", filepath.Join(repoRoot(t), "docker", "compose.sidecar.yml"), "-f", override),
		env: append(os.Environ(), "CO_INFUSE_IMAGE="+img, "CO_INFUSE_SOCKS_PORT=", "CO_INFUSE_SIDECAR_NET="+net),
	}
	lndName := project + "-lnd"
	lndDir := t.TempDir() // lnd's lnddir, kept across its restart
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			logs, _ := c.composeOut(ctx, "logs", "--no-color", "--tail", "40")
			t.Logf("compose logs:\n%s", logs)
			out, _ := run(ctx, "docker", "logs", "--tail", "30", lndName)
			t.Logf("lnd logs:\n%s", out)
		}
		run(ctx, "docker", "rm", "-f", "-v", lndName)
		if out, err := c.composeOut(ctx, "down", "-v", "--remove-orphans", "-t", "5"); err != nil {
			t.Logf("compose down: %v\n%s", err, out)
		}
	})
	// The project's network and volumes and co-infuse's container, not
	// started.
	if out, err := c.composeOut(ctx, "up", "--no-start", "co-infuse"); err != nil {
		t.Fatalf("compose up --no-start: %v\n%s", err, out)
	}
	// startLND (re)creates the lnd container, on the regtest network (for
	// btcd) and at lndIP on the project's network, with extra flags.
	startLND := func(extra ...string) {
		run(ctx, "docker", "stop", "-t", "30", lndName)
		run(ctx, "docker", "rm", "-f", lndName)
		args := append([]string{"create", "--name", lndName, "--hostname", "lnd",
			"--network", ln.network, "--network-alias", "lnd", "--init",
			"-v", ln.binDir + ":/daemons:ro",
			"-v", filepath.Join(ln.dir, "btcd") + ":/btcd:ro",
			"-v", lndDir + ":/root/.lnd",
			"-v", project + "_lnd-creds:/creds",
			"-v", project + "_co-infuse-control:/control:ro",
			builderImage, "/daemons/lnd", "--lnddir=/root/.lnd", "--alias=sidecar",
			"--noseedbackup", "--bitcoin.regtest", "--bitcoin.node=btcd",
			"--btcd.rpchost=btcd:18334", "--btcd.rpcuser=" + btcdRPCUser,
			"--btcd.rpcpass=" + ln.rpcPass, "--btcd.rpccert=/btcd/rpc.cert",
			"--listen=0.0.0.0:9735", "--rpclisten=0.0.0.0:10009",
			"--tlsextradomain=lnd", "--tlscertpath=/creds/tls.cert",
			"--adminmacaroonpath=/creds/admin.macaroon",
			"--norest", "--nobootstrap", "--healthcheck.diskspace.attempts=0"}, extra...)
		docker(t, ctx, args...)
		docker(t, ctx, "network", "connect", "--ip", lndIP, project+"_default", lndName)
		docker(t, ctx, "start", lndName)
	}
	lncli := func(args ...string) (string, error) {
		return run(ctx, "docker", append([]string{"exec", lndName, "/daemons/lncli", "--network=regtest",
			"--rpcserver=localhost:10009", "--tlscertpath=/creds/tls.cert",
			"--macaroonpath=/creds/admin.macaroon"}, args...)...)
	}
	// A first start, as `docker compose up` does it: co-infuse comes up
	// before lnd has a wallet, cert or macaroon, and waits for them
	// (CO_INFUSE_LND_WAIT_FOR_CREDENTIALS) with its control port up.
	if out, err := c.composeOut(ctx, "up", "-d", "co-infuse"); err != nil {
		t.Fatalf("compose up co-infuse: %v\n%s", err, out)
	}
	waitFor(t, ctx, "co-infuse up and waiting for lnd's credentials", func() (bool, error) {
		st, err := c.statusOf(ctx, "co-infuse")
		if err != nil {
			c.exitedFatal(ctx, "co-infuse")
			return false, err
		}
		if !strings.HasPrefix(st.Payments, "waiting for lnd") {
			return false, fmt.Errorf("status payments %q", st.Payments)
		}
		return true, nil
	})
	// lnd, with the file's tor settings: it creates its wallet
	// (--noseedbackup), writes cert and macaroon into lnd-creds and, once
	// unlocked, publishes its onion through co-infuse's control port,
	// which is already up.
	startLND("--tor.active", "--tor.v3", "--tor.streamisolation",
		"--tor.socks="+coinfuseIP+":9050", "--tor.control="+coinfuseIP+":9051",
		"--tor.targetipaddress="+lndIP)
	waitFor(t, ctx, "co-infuse's wallet on the sidecar lnd in its status", func() (bool, error) {
		st, err := c.statusOf(ctx, "co-infuse")
		if err != nil {
			c.exitedFatal(ctx, "co-infuse")
			return false, err
		}
		if st.Client == nil || st.Client.Wallet == nil || st.Payments != "ready" {
			return false, fmt.Errorf("no wallet in co-infuse's status (payments %q)", st.Payments)
		}
		return true, nil
	})
	mode, err := run(ctx, "docker", "exec", lndName, "stat", "-c", "%a %u", "/creds/admin.macaroon")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lnd's admin.macaroon in lnd-creds: mode and owner %s", mode)
	t.Logf("co-infuse waited for lnd's cert and macaroon in lnd-creds and runs its wallet on it: %v", time.Since(begin).Round(time.Second))

	var onion string
	waitFor(t, ctx, "lnd advertising an onion address it published through co-infuse", func() (bool, error) {
		if state, _ := run(ctx, "docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", lndName); strings.HasPrefix(state, "exited") {
			logs, _ := run(ctx, "docker", "logs", "--tail", "10", lndName)
			t.Fatalf("lnd with tor.control at co-infuse exited (%s): %s", state, logs)
		}
		out, err := lncli("getinfo")
		if err != nil {
			return false, err
		}
		var info struct {
			URIs []string `json:"uris"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil {
			return false, err
		}
		for _, u := range info.URIs {
			if _, hostport, ok := strings.Cut(u, "@"); ok && strings.HasSuffix(hostport, ".onion:9735") {
				onion = strings.TrimSuffix(hostport, ":9735")
				return true, nil
			}
		}
		return false, fmt.Errorf("lnd advertises %v", info.URIs)
	})
	st, err := c.statusOf(ctx, "co-infuse")
	if err != nil {
		t.Fatal(err)
	}
	if st.Client == nil {
		t.Fatal("no client section in co-infuse's status")
	}
	found := false
	for _, o := range st.Client.OnionServices {
		if o.Address == onion {
			found = true
			if !slices.Equal(o.Ports, []uint16{9735}) {
				t.Errorf("co-infuse publishes %s with ports %v, want [9735]", onion, o.Ports)
			}
		}
	}
	if !found {
		t.Fatalf("lnd advertises %s but co-infuse's status lists %+v", onion, st.Client.OnionServices)
	}
	t.Logf("lnd published %s through co-infuse's control port (cookie from co-infuse-control, target %s:9735): %v", onion, lndIP, time.Since(begin).Round(time.Second))
}

// exitedFatal fails the test with the last log lines if service's
// container has exited.
func (c *cnet) exitedFatal(ctx context.Context, service string) {
	c.t.Helper()
	id := c.container(ctx, service)
	if state, _ := run(ctx, "docker", "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", id); strings.HasPrefix(state, "exited") {
		logs, _ := run(ctx, "docker", "logs", "--tail", "5", id)
		c.t.Fatalf("%s exited (%s): %s", service, state, logs)
	}
}
