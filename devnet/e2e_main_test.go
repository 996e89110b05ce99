package devnet

// End-to-end tests: real libp2p hosts on loopback, Debian's curl, real btcd
// and lnd (from regtest.EnsureBinaries' cache). Every listener is on
// 127.0.0.1 with a kernel-chosen port; -short skips them all.
//
//	TestE2EDevnet                  one shared 6-node devnet: 50 MiB by curl over
//	                               SOCKS5 and HTTP CONNECT, isolation, garbage,
//	                               btcd sync through the proxy, concurrency,
//	                               upload, optimistic data, RESOLVE, error codes
//	TestE2EExitPolicyRefusesLoopback  default exit policy, end to end
//	TestE2EKillHopMidDownload      guard, middle, exit closed mid-download
//	TestE2ECloseDuringDownload     Devnet.Close under load
//	TestE2EIsolationCapSparesLiveStreams  pool cap vs live streams
//	TestE2EPaidDownload            devnet with Lightning payments; status --json
//	                               of the client agrees with every hop's
//	TestE2ECircuitChoice           per-port exits, dirtiness, pre-built circuits
//	TestE2EOnionAnsweredByClient   .onion with no descriptor gets 0xF0 with no
//	                               circuit or BEGIN
//	TestE2EOnionService            curl over SOCKS to the demo server published
//	                               as an onion service: bytes intact, the
//	                               rendezvous points see ciphertext and middle
//	                               relays only; 0xF0 unknown, 0xF6 bad checksum
//	TestE2EOnionIntroPointLost     an intro-point node stops; the service moves
//	                               it and republishes; clients reach it again
//	TestE2EVoucherLightning        purchases and crash-resume against real lnd
//	TestE2EBuyAheadThroughCircuits buy-ahead in the background; non-guard mints
//	                               see purchases only through circuits; no hop
//	                               bought from in the minute before its circuit
//	TestE2EPaidCost                ten paid 50 MiB downloads, fresh credentials:
//	                               byte-exact, paid ≤ 130% of advertised prices
//	                               (target 110%); a bitcoind-like workload's
//	                               ≤ 800% (target 110%)
//	TestE2EControlPortOnion        lnd's controller code publishes through the
//	                               control port; curl fetches the .onion
//	TestE2ELndOnionViaControlPort  real lnd with tor.active/v3 gets its .onion
//	                               URI from co-infuse; a 2nd lnd connects and
//	                               opens a channel to it; after a co-infuse
//	                               restart lnd publishes it again
//	TestE2ETorDual                 a private Tor network (tornet) beside the
//	                               devnet: a control-port service reached by
//	                               curl through Tor and through co-infuse at
//	                               one .onion; lnd behind Tor <-> lnd behind
//	                               co-infuse by .onion, with channels
//	TestE2ECLI                     the co-infuse binary: init, run, devnet
//	TestE2EMempool                 delivery nodes in front of a real btcd:
//	                               btcctl, curl and rpcclient through the
//	                               JSON-RPC port, btcd's codes, maxfeerate,
//	                               crash-restart, what delivery nodes saw,
//	                               pass-through to an upstream btcd
//	TestE2EMempoolPaid             the same behind Lightning's btcd, paid
//	TestE2EDevnetTor               devnet --tor: a private Tor network, the
//	                               tor-gateway node's and the client's
//	                               managed tors bootstrapped in it; a page
//	                               through its exits; no tor after Close
//	TestE2ETorGateway              curl to a Tor-only onion through a
//	                               gateway exit, byte-exact; tor's 0xF0,
//	                               0xF6 for a bad checksum
//	TestE2ETorGatewayOnionOrder    a found descriptor whose intro fails
//	                               never reaches the gateway (0xF2); a
//	                               forged descriptor is ignored, logged,
//	                               and the gateway is used
//	TestE2ETorGatewayNotReady      a gateway whose tor cannot bootstrap:
//	                               0x01 at once, its exit still works
//
// The Tor-world tests (TestE2ETor*) share one private Tor network per
// package run (gatewayTor); TestE2EDevnetTor starts its own.
//
// E2E_LOG=debug prints the nodes' logs. TestMain checks for leaked
// goroutines once every test has closed its devnet; the helpers below are
// shared by the e2e_*_test.go files.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	closeGatewayTor() // the Tor-gateway tests' private Tor network
	if code == 0 {
		// No ignores: once every devnet is closed, no goroutine of libp2p,
		// the DHT, quic-go or ours is left running.
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after every node was closed: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// skipShort skips an end-to-end test under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test; skipped with -short")
	}
}

// startTestDevnet starts a devnet on loopback with kernel-chosen ports only
// and closes it when the test ends.
func startTestDevnet(t *testing.T, o Options) *Devnet {
	t.Helper()
	o.Dir = t.TempDir()
	o.SOCKSListen = "127.0.0.1:0"
	o.HTTPListen = "127.0.0.1:0"
	if o.WebListen == "" {
		o.WebListen = "127.0.0.1:0"
	}
	// E2E_LOG=debug (or info) shows the nodes' logs while chasing a failure.
	if lv := os.Getenv("E2E_LOG"); lv != "" && o.Logger == nil {
		o.Logger = node.NewLogger(os.Stderr, lv)
	}
	timeout := 90 * time.Second
	if o.Tor {
		timeout = 5 * time.Minute // the private Tor network's bootstrap
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	d, err := Start(ctx, o)
	if err != nil {
		t.Fatalf("Start(%d relays, %d exits, default policy %v): %v", o.Relays, o.Exits, o.ExitsDefaultPolicy, err)
	}
	t.Logf("devnet of %d nodes up in %v: socks %s, http %s, web %v", len(d.Nodes), time.Since(start).Round(time.Millisecond), d.Client.SOCKSAddr(), d.Client.HTTPAddr(), d.WebAddr)
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("devnet close: %v", err)
		}
	})
	return d
}

// curlResult is how one curl run ended.
type curlResult struct {
	code           int // curl's exit code; 0 is success
	stdout, stderr string
}

func (r curlResult) String() string {
	return fmt.Sprintf("exit %d, stderr %q", r.code, strings.TrimSpace(r.stderr))
}

func curlPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed (apt-get install curl)")
	}
	return p
}

// curlCmd prepares curl with no proxy settings from the environment, so the
// only proxy is the one args name.
func curlCmd(ctx context.Context, t *testing.T, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	t.Helper()
	cmd := exec.CommandContext(ctx, curlPath(t), append([]string{"--silent", "--show-error", "--noproxy", ""}, args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
	cmd.WaitDelay = 5 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	return cmd, &out, &errOut
}

// runCurl runs curl to completion under ctx. It fails the test only when
// curl could not be run at all; a curl error is in the result.
func runCurl(ctx context.Context, t *testing.T, args ...string) curlResult {
	t.Helper()
	cmd, out, errOut := curlCmd(ctx, t, args...)
	err := cmd.Run()
	return curlResult{code: exitCode(t, err, args), stdout: out.String(), stderr: errOut.String()}
}

func exitCode(t *testing.T, err error, args []string) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("run curl %v: %v", args, err)
		return -1
	}
}

// mustCurl runs curl and fails the test unless it succeeds.
func mustCurl(ctx context.Context, t *testing.T, args ...string) curlResult {
	t.Helper()
	r := runCurl(ctx, t, args...)
	if r.code != 0 {
		t.Fatalf("curl %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// demoSum is the SHA-256 of DemoBytes(n), what /bytes/n must deliver.
func demoSum(t *testing.T, n int64) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.CopyN(h, DemoBytes(n), n); err != nil {
		t.Fatalf("hash DemoBytes(%d): %v", n, err)
	}
	return [32]byte(h.Sum(nil))
}

func fileSum(t *testing.T, path string) ([32]byte, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open download: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatalf("hash %s: %v", path, err)
	}
	return [32]byte(h.Sum(nil)), n
}

// poll calls cond every 50ms until it returns true (nil) or ctx ends
// (ctx's error).
func poll(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
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

// waitFor polls cond until it holds and fails the test with what if ctx
// ends first.
func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := poll(ctx, cond); err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
}

// circuitFor returns the client's circuit for isolation username user.
func circuitFor(n *node.Node, user string) (node.CircuitInfo, bool) {
	for _, c := range n.Circuits() {
		if c.Isolation == user {
			return c, true
		}
	}
	return node.CircuitInfo{}, false
}

// socksReply is a SOCKS5 server's answer to a CONNECT request.
type socksReply struct {
	method byte // method the server chose in the greeting
	rep    byte // REP field of the reply (RFC 1928 §6)
}

// socksConnect speaks SOCKS5 (RFC 1928, RFC 1929 when user is set) to the
// proxy at addr and asks for a CONNECT to host:port as a domain name. On
// success (rep 0) the returned conn carries the stream; otherwise it is
// closed. The whole handshake is bounded by ctx.
func socksConnect(ctx context.Context, addr, user, pass, host string, port uint16) (net.Conn, socksReply, error) {
	var rep socksReply
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, rep, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	fail := func(format string, args ...any) (net.Conn, socksReply, error) {
		c.Close()
		return nil, rep, fmt.Errorf(format, args...)
	}
	br := bufio.NewReader(c)
	greet := []byte{5, 1, 0}
	if user != "" {
		greet = []byte{5, 1, 2}
	}
	if _, err := c.Write(greet); err != nil {
		return fail("greeting: %w", err)
	}
	var two [2]byte
	if _, err := io.ReadFull(br, two[:]); err != nil {
		return fail("greeting reply: %w", err)
	}
	rep.method = two[1]
	if two[0] != 5 || two[1] != greet[2] {
		return fail("greeting reply %x, want method %#x", two, greet[2])
	}
	if user != "" {
		msg := append([]byte{1, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		if _, err := c.Write(msg); err != nil {
			return fail("auth: %w", err)
		}
		if _, err := io.ReadFull(br, two[:]); err != nil {
			return fail("auth reply: %w", err)
		}
		if two != [2]byte{1, 0} {
			return fail("auth reply %x", two)
		}
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	req = binary.BigEndian.AppendUint16(req, port)
	if _, err := c.Write(req); err != nil {
		return fail("request: %w", err)
	}
	var head [4]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return fail("reply: %w", err)
	}
	rep.rep = head[1]
	var rest int
	switch head[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	default:
		return fail("reply %x: unexpected address type", head)
	}
	if _, err := io.ReadFull(br, make([]byte, rest)); err != nil {
		return fail("reply address: %w", err)
	}
	if head[0] != 5 || rep.rep != 0 {
		c.Close()
		return nil, rep, fmt.Errorf("SOCKS reply %#02x", rep.rep)
	}
	c.SetDeadline(time.Time{})
	if br.Buffered() > 0 {
		return fail("server sent %d bytes before the stream", br.Buffered())
	}
	return c, rep, nil
}

// hostPort splits a loopback address into host and numeric port.
func hostPort(t testing.TB, a net.Addr) (string, uint16) {
	t.Helper()
	h, p, err := net.SplitHostPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return h, uint16(n)
}

// tempFile is a path in the test's temp dir.
func tempFile(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }
