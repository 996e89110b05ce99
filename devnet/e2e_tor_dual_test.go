package devnet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/lightningnetwork/lnd/tor"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/internal/tornet"
	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/node"
)

// TestE2ETorDual runs the tests of one .onion on two networks against the
// package's private Tor network on loopback (gatewayTor: tornet's three
// directory authorities and five relays, real tor processes; it is the
// slow part, so these subtests and the Tor-gateway tests share it), with a
// Tor client of its own in it, and one devnet whose client runs a managed tor that joins it
// (the tor section, dual publication on by default).
//
//	DualPublication   lnd's controller code adds a service on co-infuse's
//	                  control port; a plain Tor client of the private
//	                  network fetches a file from it by real curl through
//	                  its SocksPort, and the co-infuse client does through
//	                  the rendezvous path, both byte-exact, by the same
//	                  .onion; status shows "tor: published"; DEL_ONION and a
//	                  closed control connection take it off both networks
//	LndTorToCoInfuse  an lnd behind real Tor connects by .onion to an lnd
//	                  behind co-infuse (whose onion co-infuse publishes on
//	                  Tor too) and opens a channel (real btcd regtest)
//	LndCoInfuseToTor  an lnd behind co-infuse connects by .onion to an lnd
//	                  behind real Tor (no co-infuse descriptor: through the
//	                  Tor-gateway exit) and opens a channel; skipped when
//	                  this build has no gateway exit (cell service 4)
func TestE2ETorDual(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, b := range []string{"tor", "tor-gencert"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install tor)", b)
		}
	}
	start := time.Now()
	tn, _ := gatewayTor(t) // the package's one private Tor network
	t.Logf("private Tor network ready after %v", time.Since(start).Round(time.Millisecond))

	// With a gateway exit in this build (the torgw branch), exit1 is one
	// too, its tor in the same network.
	gateway := cell.Service(4).Valid()
	w := &rvWatch{prev: map[string]map[peer.ID]bool{}}
	d := startDualDevnet(t, Options{Relays: 6, Exits: 1, ControlListen: "127.0.0.1:0",
		Configure: func(name string, cfg *node.Config) {
			switch {
			case name == "client":
				cfg.Tor.Enabled = true
				cfg.Tor.Torrc = tn.Torrc()
			case name == "exit1" && gateway:
				cfg.Roles = append(cfg.Roles, node.RoleTorGateway)
				cfg.Tor.Torrc = tn.Torrc()
			}
		},
		NodeOptions: func(name string) []node.Option {
			if strings.HasPrefix(name, "relay") {
				return []node.Option{node.WithRendezvousObserver(w.observe)}
			}
			return nil
		}})
	// A Tor client of its own (the shared network's onion host belongs to
	// the gateway tests): its services and SOCKS streams are this test's.
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	torClient, err := tn.Client(ctx)
	cancel()
	if err != nil {
		t.Fatalf("a plain Tor client of the private network: %v", err)
	}
	t.Cleanup(func() { torClient.Close() })
	t.Run("DualPublication", func(t *testing.T) { testDualPublication(t, d, w, tn, torClient) })
	t.Run("Lnd", func(t *testing.T) { testDualLnd(t, d, torClient, gateway) })
}

// startDualDevnet is startTestDevnet with a longer deadline (the machine
// also runs a Tor network).
func startDualDevnet(t *testing.T, o Options) *Devnet {
	t.Helper()
	o.Dir = t.TempDir()
	o.SOCKSListen = "127.0.0.1:0"
	o.HTTPListen = "127.0.0.1:0"
	o.WebListen = "127.0.0.1:0"
	if lv := os.Getenv("E2E_LOG"); lv != "" {
		o.Logger = node.NewLogger(os.Stderr, lv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	d, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("devnet: %v", err)
	}
	t.Logf("devnet up in %v", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("devnet close: %v", err)
		}
	})
	return d
}

// dualTorState is the client's status "tor" field for the service at
// address, and whether status lists the service at all.
func dualTorState(n *node.Node, address string) (string, bool) {
	st := n.Status()
	if st.Client == nil {
		return "", false
	}
	for _, s := range st.Client.OnionServices {
		if s.Address == address {
			return s.Tor, true
		}
	}
	return "", false
}

// waitTorPublished waits until the client's status shows address
// published on Tor.
func waitTorPublished(ctx context.Context, t *testing.T, n *node.Node, address string) {
	t.Helper()
	var last string
	err := pollSlow(ctx, func() bool {
		s, _ := dualTorState(n, address)
		if s != last {
			t.Logf("status: %s tor: %q", address, s)
			last = s
		}
		return s == "published"
	})
	if err != nil {
		t.Fatalf("%s never shown as published on Tor (last %q): %v", address, last, err)
	}
}

// fetchOnion fetches /bytes/size from onion through the SOCKS proxy at
// socks with real curl, retrying until it succeeds under ctx (a fresh
// descriptor takes a while to reach HSDirs), and checks the bytes.
func fetchOnion(ctx context.Context, t *testing.T, socks, onion string, size int64, what string) {
	t.Helper()
	out := tempFile(t, "download")
	var r curlResult
	err := pollSlow(ctx, func() bool {
		r = runCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "-o", out, fmt.Sprintf("http://%s/bytes/%d", onion, size))
		if r.code != 0 {
			t.Logf("%s: curl %v (retrying)", what, r)
		}
		return r.code == 0
	})
	if err != nil {
		t.Fatalf("%s: never fetched: %v, last %v", what, err, r)
	}
	sum, n := fileSum(t, out)
	if n != size || sum != demoSum(t, size) {
		t.Fatalf("%s: got %d bytes (sha256 %x), want %d byte-exact", what, n, sum, size)
	}
	t.Logf("%s: %d bytes byte-exact", what, n)
}

func testDualPublication(t *testing.T, d *Devnet, w *rvWatch, tn *tornet.Network, torClient *torproc.Tor) {
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	_, webPort := hostPort(t, d.WebAddr)

	// lnd's own controller code speaks the control port, as lnd does with
	// tor.active and tor.v3 (NEW:ED25519-V3, SAFECOOKIE).
	c := tor.NewController(d.Client.ControlAddr().String(), "127.0.0.1", "")
	if err := c.Start(); err != nil {
		t.Fatalf("lnd controller Start: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "v3_onion_private_key")
	start := time.Now()
	onion, err := c.AddOnion(tor.AddOnionConfig{VirtualPort: 80, TargetPorts: []int{int(webPort)}, Store: tor.NewOnionFile(keyFile, 0o600, false, nil)})
	if err != nil {
		t.Fatalf("ADD_ONION on co-infuse's control port: %v", err)
	}
	t.Logf("ADD_ONION answered %s in %v", onion.OnionService, time.Since(start).Round(time.Millisecond))
	host, _, _ := net.SplitHostPort(onion.OnionService)
	if host == "" {
		host = onion.OnionService
	}
	if _, err := onionaddr.Parse(host); err != nil {
		t.Fatalf("ServiceID %q: %v", onion.OnionService, err)
	}
	if s, ok := dualTorState(d.Client, host); !ok || s == "" {
		t.Fatalf("status lists %s: %v, tor %q (want a tor state with dual publication on)", host, ok, s)
	}
	waitTorPublished(ctx, t, d.Client, host)

	const size = 1 << 20
	// A plain Tor client of the private network: Tor's descriptor, Tor's
	// rendezvous, the co-infuse client's tor, the same Port= target.
	fetchOnion(ctx, t, torClient.SocksAddr().String(), host, size, "Tor client by curl through its SocksPort")

	// The co-infuse client, through co-infuse's own descriptor and a
	// rendezvous point of the devnet (the relays' observers see it).
	w.mu.Lock()
	before := w.total
	w.mu.Unlock()
	fetchOnion(ctx, t, d.Client.SOCKSAddr().String(), host, size, "co-infuse client by curl through its SOCKS port")
	w.mu.Lock()
	spliced := w.total - before
	w.mu.Unlock()
	if spliced < size {
		t.Fatalf("co-infuse rendezvous points spliced %d bytes for a %d-byte download: not the rendezvous path", spliced, size)
	}
	// tor dies (kill -9): torproc restarts it and adds the service back
	// under the same key; Tor clients reach it again.
	tp := d.Client.Tor()
	restarts := tp.Status().Restarts
	if err := syscall.Kill(tp.Pid(), syscall.SIGKILL); err != nil {
		t.Fatalf("kill the client's tor: %v", err)
	}
	waitFor(ctx, t, "the client's tor to be restarted", func() bool {
		s := tp.Status()
		return s.Restarts > restarts && s.Running
	})
	waitTorPublished(ctx, t, d.Client, host)
	// A Tor client that cached the descriptor from before the restart
	// keeps trying its dead introduction points on Tor's own retry
	// schedule (seven minutes in one loaded CI run, which spent this
	// test's deadline); what this checks is that the service is back on
	// Tor, so a Tor client without that cache asks.
	fresh, err := tn.Client(ctx)
	if err != nil {
		t.Fatalf("a new Tor client: %v", err)
	}
	defer fresh.Close()
	fetchOnion(ctx, t, fresh.SocksAddr().String(), host, size, "new Tor client after the service's tor restarted")

	raw, _ := json.Marshal(d.Client.Status().Client.OnionServices)
	if !strings.Contains(string(raw), `"address":"`+host+`"`) || !strings.Contains(string(raw), `"tor":"published"`) {
		t.Fatalf("status JSON: %s", raw)
	}

	// DEL_ONION (lnd's Stop) takes it off co-infuse at once and off Tor:
	// Tor clients can no longer introduce themselves.
	if err := c.Stop(); err != nil {
		t.Fatalf("lnd controller Stop (DEL_ONION): %v", err)
	}
	if _, ok := dualTorState(d.Client, host); ok {
		t.Fatal("still in status after DEL_ONION")
	}
	waitTorGone(ctx, t, torClient, host)

	// A service of a control connection that closes without DEL_ONION goes
	// from both networks too (Tor's ephemeral semantics).
	id, conn := rawAddOnion(ctx, t, d, int(webPort))
	waitTorPublished(ctx, t, d.Client, id+".onion")
	fetchOnion(ctx, t, torClient.SocksAddr().String(), id+".onion", 4096, "Tor client, bitcoind-style service")
	conn.Close()
	waitFor(ctx, t, "the closed connection's service to leave status", func() bool {
		_, ok := dualTorState(d.Client, id+".onion")
		return !ok
	})
	waitTorGone(ctx, t, torClient, id+".onion")
}

// waitTorGone waits until a Tor client can no longer reach onion (its
// descriptor may still be cached; its introduction points are gone).
func waitTorGone(ctx context.Context, t *testing.T, torClient *torproc.Tor, onion string) {
	t.Helper()
	err := pollSlow(ctx, func() bool {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
		conn, err := torClient.DialSocks(cctx, onion, 80)
		if err == nil {
			conn.Close()
			return false
		}
		// Only tor's own SOCKS refusal counts (not our deadline).
		var se *torproc.SocksError
		t.Logf("after removal, Tor says: %v", err)
		return errors.As(err, &se)
	})
	if err != nil {
		t.Fatalf("%s still reachable on Tor after removal: %v", onion, err)
	}
}

// rawAddOnion speaks the control protocol by hand over TCP, as Bitcoin
// Core does: PROTOCOLINFO, cookie AUTHENTICATE, ADD_ONION NEW:ED25519-V3
// with bitcoind's Port= form. It returns the service id and the open
// connection (closed at the latest by the test's cleanup).
func rawAddOnion(ctx context.Context, t *testing.T, d *Devnet, targetPort int) (string, net.Conn) {
	t.Helper()
	var dl net.Dialer
	conn, err := dl.DialContext(ctx, "tcp", d.Client.ControlAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	send := func(line string) []string {
		t.Helper()
		if _, err := fmt.Fprintf(conn, "%s\r\n", line); err != nil {
			t.Fatalf("control write: %v", err)
		}
		var lines []string
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("control read after %q: %v", strings.Fields(line)[0], err)
			}
			l = strings.TrimRight(l, "\r\n")
			lines = append(lines, l)
			if len(l) >= 4 && l[3] == ' ' {
				if !strings.HasPrefix(l, "250") {
					t.Fatalf("%q: %v", strings.Fields(line)[0], lines)
				}
				return lines
			}
		}
	}
	cookie, err := os.ReadFile(d.Client.ControlCookie())
	if err != nil {
		t.Fatal(err)
	}
	send("PROTOCOLINFO 1")
	send(fmt.Sprintf("AUTHENTICATE %x", cookie))
	var id string
	for _, l := range send(fmt.Sprintf("ADD_ONION NEW:ED25519-V3 Port=80,127.0.0.1:%d", targetPort)) {
		if v, ok := strings.CutPrefix(l, "250-ServiceID="); ok {
			id = v
		}
	}
	if len(id) != onionaddr.IDLen {
		t.Fatalf("ADD_ONION gave ServiceID %q", id)
	}
	t.Cleanup(func() { conn.Close() })
	return id, conn
}

// testDualLnd: lnd behind co-infuse and lnd behind real Tor, by .onion,
// with channels on a real btcd regtest.
func testDualLnd(t *testing.T, d *Devnet, torClient *torproc.Tor, gateway bool) {
	bctx, bcancel := context.WithTimeout(t.Context(), 30*time.Minute)
	bins, err := regtest.EnsureBinaries(bctx, "", nil)
	bcancel()
	if err != nil {
		t.Fatalf("lnd binary: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
	defer cancel()
	ln, err := regtest.Start(ctx, regtest.Options{Dir: filepath.Join(t.TempDir(), "regtest"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("regtest: %v", err)
	}
	t.Cleanup(func() { ln.Close() })

	t.Run("LndTorToCoInfuse", func(t *testing.T) {
		// carol is behind co-infuse: its onion comes from co-infuse's
		// control port and, by dual publication, is on Tor too.
		carol := startTorLnd(ctx, t, ln, bins, "carol",
			"--tor.active", "--tor.v3",
			"--tor.control="+d.Client.ControlAddr().String(),
			"--tor.socks="+d.Client.SOCKSAddr().String())
		uri, pub, host := lndOnionURI(ctx, t, carol)
		waitTorPublished(ctx, t, d.Client, host)
		// erin is behind the private network's real Tor (SOCKS only).
		erin := startTorLnd(ctx, t, ln, bins, "erin", "--tor.active", "--tor.socks="+torClient.SocksAddr().String())
		lndConnectAndOpen(ctx, t, ln, bins, erin, carol, uri, pub)
		t.Logf("lnd behind Tor opened a channel to lnd behind co-infuse at %s", host)
	})

	t.Run("LndCoInfuseToTor", func(t *testing.T) {
		// A .onion with no co-infuse descriptor is reached through a
		// Tor-gateway exit (cell service 4, the torgw branch).
		if !gateway {
			t.Skip("this build has no Tor-gateway exit (cell.ServiceTorGateway, torgw branch): a co-infuse client cannot reach a Tor-only .onion")
		}
		// frank is behind real Tor and publishes its onion there only.
		frank := startTorLnd(ctx, t, ln, bins, "frank",
			"--tor.active", "--tor.v3",
			"--tor.control="+torClient.ControlAddr().String(),
			"--tor.socks="+torClient.SocksAddr().String())
		uri, pub, host := lndOnionURI(ctx, t, frank)
		if _, ok := dualTorState(d.Client, host); ok {
			t.Fatalf("%s is published by co-infuse: the test needs a Tor-only onion", host)
		}
		// dave is behind co-infuse (SOCKS only).
		dave := startTorLnd(ctx, t, ln, bins, "dave", "--tor.active", "--tor.socks="+d.Client.SOCKSAddr().String())
		lndConnectAndOpen(ctx, t, ln, bins, dave, frank, uri, pub)
		t.Logf("lnd behind co-infuse opened a channel to lnd behind Tor at %s", host)
	})
}

// lndOnionURI waits for p's <pubkey>@<56>.onion:9735 URI in lncli getinfo.
func lndOnionURI(ctx context.Context, t *testing.T, p *lndProc) (uri, pub, host string) {
	t.Helper()
	err := pollSlow(ctx, func() bool {
		select {
		case werr := <-p.done:
			p.done <- werr
			return true
		default:
		}
		uris, _ := p.getInfo(ctx)["uris"].([]any)
		for _, u := range uris {
			if s, _ := u.(string); strings.Contains(s, ".onion:") {
				uri = s
				return true
			}
		}
		return false
	})
	if err != nil || uri == "" {
		t.Fatalf("lnd shows no .onion URI (%v)\n%s", err, p.logTail())
	}
	pub, hostPort, _ := strings.Cut(uri, "@")
	host, port, err := net.SplitHostPort(hostPort)
	if _, perr := onionaddr.Parse(host); err != nil || perr != nil || port != "9735" || len(pub) != 66 {
		t.Fatalf("lnd's URI %q: %v %v", uri, err, perr)
	}
	t.Logf("lncli getinfo: %s", uri)
	return uri, pub, host
}

// lndConnectAndOpen: from connects to to's uri (lncli connect, retried
// while the onion settles), is funded by the harness's Alice, and opens a
// channel to it that from sees active after six blocks.
func lndConnectAndOpen(ctx context.Context, t *testing.T, ln *regtest.Network, bins regtest.Bins, from, to *lndProc, uri, pub string) {
	t.Helper()
	if err := pollSlow(ctx, func() bool { return from.getInfo(ctx) != nil }); err != nil {
		t.Fatalf("lnd not ready: %v\n%s", err, from.logTail())
	}
	var (
		out []byte
		err error
	)
	err = pollSlow(ctx, func() bool {
		out, err = from.cli(ctx, "connect", uri)
		if err != nil {
			t.Logf("lncli connect %s: %v %s (retrying)", uri, err, out)
		}
		return err == nil || strings.Contains(string(out), "already connected")
	})
	if err != nil {
		t.Fatalf("cannot connect to %s: %v\n%s\n--- from ---\n%s\n--- to ---\n%s", uri, err, out, from.logTail(), to.logTail())
	}
	var addr struct{ Address string }
	if out, err := from.cli(ctx, "newaddress", "p2wkh"); err != nil || json.Unmarshal(out, &addr) != nil {
		t.Fatalf("newaddress: %v %s", err, out)
	}
	alice := ln.Alice()
	aliceCLI := &lndProc{dir: alice.Dir, rpc: alice.RPCHost, lncli: bins.Lncli}
	if out, err := aliceCLI.cli(ctx, "sendcoins", "--addr="+addr.Address, "--amt=1000000"); err != nil {
		t.Fatalf("alice sendcoins: %v %s", err, out)
	}
	if err := ln.Mine(ctx, 6); err != nil {
		t.Fatal(err)
	}
	err = pollSlow(ctx, func() bool {
		out, err = from.cli(ctx, "openchannel", "--node_key="+pub, "--local_amt=200000")
		if err != nil {
			t.Logf("openchannel: %v %s (retrying until the coins confirm)", err, out)
		}
		return err == nil
	})
	if err != nil {
		t.Fatalf("openchannel: %v %s\n--- from ---\n%s", err, out, from.logTail())
	}
	if err := ln.Mine(ctx, 6); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*lndProc{from, to} {
		other := pub
		if p == to {
			other = lndPubkey(ctx, t, from)
		}
		err = pollSlow(ctx, func() bool { return lndChannelActive(ctx, p, other) })
		if err != nil {
			t.Fatalf("no active channel seen by %s: %v\n--- from ---\n%s\n--- to ---\n%s", p.dir, err, from.logTail(), to.logTail())
		}
	}
}

// lndPubkey is p's identity key from lncli getinfo.
func lndPubkey(ctx context.Context, t *testing.T, p *lndProc) string {
	t.Helper()
	pk, _ := p.getInfo(ctx)["identity_pubkey"].(string)
	if len(pk) != 66 {
		t.Fatalf("identity_pubkey %q", pk)
	}
	return pk
}

// lndChannelActive reports whether p has an active channel with remote.
func lndChannelActive(ctx context.Context, p *lndProc, remote string) bool {
	out, err := p.cli(ctx, "listchannels", "--active_only")
	var ch struct {
		Channels []struct {
			RemotePubkey string `json:"remote_pubkey"`
			Active       bool
		}
	}
	if err != nil || json.Unmarshal(out, &ch) != nil {
		return false
	}
	for _, c := range ch.Channels {
		if c.RemotePubkey == remote && c.Active {
			return true
		}
	}
	return false
}
