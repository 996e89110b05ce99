package devnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/tornet"
	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// gwTor is the package's one private Tor network, started lazily by the
// first test that needs it (bootstrapping one takes a minute or more) and
// shared by TestE2ETorGateway, TestE2ETorGatewayOnionOrder, TestE2ETorDual
// and BenchmarkE2ETorGateway, with one tor client in it that hosts the
// gateway tests' Tor-only onion services. Each test starts its own devnet
// and its own onion services (TestE2ETorDual its own Tor client too), so
// sharing the network shares no state a test asserts on. TestMain closes
// it after every test (closeGatewayTor), before the goroutine-leak check.
// TestE2EDevnetTor keeps a network of its own: devnet --tor starting and
// stopping one is what it tests.
var gwTor struct {
	once sync.Once
	dir  string
	net  *tornet.Network
	host *torproc.Tor
	err  error
}

// gatewayTor returns the shared private Tor network and its onion-service
// host, starting them on first use; it skips the test when Debian's tor
// is not installed.
func gatewayTor(tb testing.TB) (*tornet.Network, *torproc.Tor) {
	tb.Helper()
	if _, err := exec.LookPath("tor"); err != nil {
		tb.Skip("tor is not installed (apt-get install tor)")
	}
	gwTor.once.Do(func() {
		// Generous: authorities vote every 10 s, and CI is a loaded
		// 2-core machine.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		gwTor.dir, gwTor.err = os.MkdirTemp("", "co-infuse-torgw-")
		if gwTor.err != nil {
			return
		}
		logger := slog.New(slog.DiscardHandler)
		if lv := os.Getenv("E2E_LOG"); lv != "" {
			logger = node.NewLogger(os.Stderr, lv)
		}
		gwTor.net, gwTor.err = tornet.Start(ctx, gwTor.dir, tornet.Options{}, logger)
		if gwTor.err != nil {
			return
		}
		gwTor.host, gwTor.err = gwTor.net.Client(ctx)
	})
	if gwTor.err != nil {
		tb.Fatalf("private Tor network: %v", gwTor.err)
	}
	return gwTor.net, gwTor.host
}

// closeGatewayTor stops the shared Tor network, if one was started.
func closeGatewayTor() {
	if gwTor.net != nil {
		gwTor.net.Close()
	}
	if gwTor.dir != "" {
		os.RemoveAll(gwTor.dir)
	}
}

// startGatewayDevnet starts a devnet whose exit1 also has the tor-gateway
// role, with a managed tor that joins tn, and whose client has a managed
// tor in tn as well, and waits until the gateway's tor has bootstrapped.
// It returns the devnet and the gateway node. (devnet --tor starts a Tor
// network per devnet; these tests share one per package instead.)
func startGatewayDevnet(tb testing.TB, tn *tornet.Network, o Options) (*Devnet, *node.Node) {
	tb.Helper()
	configure := o.Configure
	o.Configure = func(name string, cfg *node.Config) {
		if configure != nil {
			configure(name, cfg)
		}
		switch name {
		case "exit1":
			cfg.Roles = append(cfg.Roles, node.RoleTorGateway)
			cfg.Tor.Torrc = tn.Torrc()
		case "client":
			// The client has a tor of its own too (as for dual
			// publication): it must never dial through it.
			cfg.Tor.Enabled = true
			cfg.Tor.Torrc = tn.Torrc()
		}
	}
	var d *Devnet
	if t, ok := tb.(*testing.T); ok {
		d = startTestDevnet(t, o)
	} else {
		o.Dir = tb.TempDir()
		o.SOCKSListen, o.HTTPListen, o.WebListen = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var err error
		if d, err = Start(ctx, o); err != nil {
			tb.Fatalf("devnet: %v", err)
		}
		tb.Cleanup(func() { d.Close() })
	}
	var gw *node.Node
	for _, n := range d.Nodes {
		if n.Tor() != nil && n != d.Client {
			gw = n
		}
	}
	if gw == nil {
		tb.Fatal("no node of the devnet runs a managed tor")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := gw.Tor().WaitBootstrapped(ctx); err != nil {
		tb.Fatalf("the gateway's tor: %v", err)
	}
	return d, gw
}

// torOnlyService publishes the devnet's demo web server (a loopback HTTP
// server) as a Tor-only onion service on host (port 80 → WebAddr) and
// returns "<id>.onion".
func torOnlyService(tb testing.TB, host *torproc.Tor, d *Devnet) string {
	tb.Helper()
	target, err := netip.ParseAddrPort(d.WebAddr.String())
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := host.AddOnionNew(ctx, []torproc.PortMap{{Virtual: 80, Target: target}})
	if err != nil {
		tb.Fatalf("ADD_ONION on the Tor host: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		host.DelOnion(ctx, id)
	})
	return id + ".onion"
}

// TestE2ETorGateway: a co-infuse client reaches a Tor-only onion service
// in a private Tor network through a gateway exit. Real curl through the
// client's SOCKS port (--socks5-hostname) fetches 1 MiB byte-exact over a
// gateway circuit (guard, middle, tor-gateway node; no co-infuse
// descriptor exists), whose last hop is the gateway, although the client
// runs a bootstrapped tor of its own; a valid but unknown
// .onion gets real tor's extended code 0xF0 through a gateway circuit
// (built for that request's credentials), curl reports it; a bad checksum
// is refused 0xF6 by the client itself, with no circuit; RESOLVE of a
// .onion stays refused locally.
func TestE2ETorGateway(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tn, host := gatewayTor(t)
	d, gw := startGatewayDevnet(t, tn, Options{Relays: 3, Exits: 2})
	onion := torOnlyService(t, host, d)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()

	// The service's descriptor reaches Tor's HSDirs some seconds after
	// ADD_ONION: until then tor answers 0xF0, which is what we poll on.
	var page curlResult
	waitFor(ctx, t, "the Tor-only onion through the gateway", func() bool {
		page = runCurl(ctx, t, "--max-time", "90", "--socks5-hostname", socks, "--proxy-user", "gw1:x", "http://"+onion+"/")
		if page.code != 0 {
			t.Logf("curl to the Tor-only onion: %v (retrying)", page)
		}
		return page.code == 0
	})
	if !strings.Contains(page.stdout, "Hello from the co-infuse devnet") {
		t.Fatalf("onion page: %q", page.stdout)
	}

	const size = 1 << 20
	r := mustCurl(ctx, t, "--max-time", "120", "--socks5-hostname", socks, "--proxy-user", "gw2:x", fmt.Sprintf("http://%s/bytes/%d", onion, size))
	want := sha256.New()
	io.Copy(want, io.LimitReader(DemoBytes(size), size))
	if got := sha256.Sum256([]byte(r.stdout)); len(r.stdout) != size || !bytes.Equal(got[:], want.Sum(nil)) {
		t.Fatalf("download through the gateway: %d bytes, not the %d served", len(r.stdout), size)
	}
	// The streams went over gateway circuits whose last hop is the gateway.
	if c, ok := gatewayCircuit(d, "gw2"); !ok || c.Path[len(c.Path)-1] != gw.ID().String() || len(c.Path) != 3 {
		t.Fatalf("no 3-hop gateway circuit to %s for the download: %+v", gw.ID(), d.Client.Circuits())
	}

	// A valid address nobody published: real tor's 0xF0, carried by the
	// gateway in END tor-socks.
	k, err := rendezvous.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r = runCurl(ctx, t, "--max-time", "120", "--socks5-hostname", socks, "--proxy-user", "unknown:x", "http://"+k.Address()+"/")
	// curl reports a SOCKS5 reply it has no name for as CURLE_PROXY (97)
	// with the code in brackets: 240 is 0xF0.
	if r.code != 97 || !strings.Contains(r.stderr, "(240)") {
		t.Fatalf("curl to an unknown onion: %v; want exit 97 and SOCKS reply (240)", r)
	}
	if _, ok := gatewayCircuit(d, "unknown"); !ok {
		t.Fatalf("the unknown onion's 0xF0 did not come through a gateway circuit: %+v", d.Client.Circuits())
	}
	if _, rep, err := socksConnect(ctx, socks, "unknown-raw", "x", k.Address(), 8333); rep.rep != 0xF0 {
		t.Fatalf("raw SOCKS CONNECT to an unknown onion: reply %#02x (%v), want 0xf0", rep.rep, err)
	}

	// A bad checksum: 0xF6 from the client itself, no circuit at all.
	c := byte('a')
	if onion[10] == 'a' {
		c = 'b'
	}
	bad := onion[:10] + string(c) + onion[11:]
	if _, rep, err := socksConnect(ctx, socks, "bad", "x", bad, 80); rep.rep != 0xF6 {
		t.Fatalf("SOCKS CONNECT to a bad-checksum onion: reply %#02x (%v), want 0xf6", rep.rep, err)
	}
	if _, ok := gatewayCircuit(d, "bad"); ok {
		t.Fatal("a bad onion address built a gateway circuit")
	}
	if got := socksResolve(ctx, t, socks, onion); !bytes.Equal(got, []byte{5, 0, 5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) {
		t.Fatalf("RESOLVE of an onion: got %x, want reply 0x04", got)
	}
}

// gatewayCircuit returns the client's gateway circuit for SOCKS user user.
func gatewayCircuit(d *Devnet, user string) (node.CircuitInfo, bool) {
	for _, c := range d.Client.Circuits() {
		if c.Gateway && c.Isolation == user {
			return c, true
		}
	}
	return node.CircuitInfo{}, false
}
