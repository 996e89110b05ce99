package devnet

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/rpcclient"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

// testBtcdThroughProxy syncs one regtest btcd from another through the
// devnet: A mines 20 blocks; B, started with --proxy at the client's SOCKS
// port and --connect to A, must reach A's height. Both listen and answer RPC
// on 127.0.0.1 only, neither has DNS seeds, UPnP or other peers, and B does
// not listen at all: loopback is all either can reach.
func testBtcdThroughProxy(t *testing.T, d *Devnet) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	// The first run on a machine builds the daemons (minutes); later runs
	// find them in the cache.
	bins, err := regtest.EnsureBinaries(ctx, "", nil)
	if err != nil {
		t.Fatalf("btcd binary: %v", err)
	}
	mining, err := regtestAddress()
	if err != nil {
		t.Fatal(err)
	}
	ports := freeLoopbackPorts(t, 3)
	aP2P, aRPC, bRPC := ports[0], ports[1], ports[2]

	a := startBtcd(ctx, t, bins.Btcd, "a", aRPC,
		"--listen="+loopbackAddr(aP2P),
		"--miningaddr="+mining,
	)
	const blocks = 20
	if _, err := a.rpc.Generate(blocks); err != nil {
		t.Fatalf("btcd A generate %d: %v\n%s", blocks, err, a.logTail())
	}
	want, err := a.rpc.GetBlockCount()
	if err != nil || want < blocks {
		t.Fatalf("btcd A height %d (%v), want at least %d", want, err, blocks)
	}

	b := startBtcd(ctx, t, bins.Btcd, "b", bRPC,
		"--nolisten",
		"--proxy="+d.Client.SOCKSAddr().String(),
		"--proxyuser=btcd-b", "--proxypass=x",
		"--noonion",
		"--connect="+loopbackAddr(aP2P),
	)
	var got int64
	err = poll(ctx, func() bool {
		got, _ = b.rpc.GetBlockCount()
		return got == want
	})
	if err != nil {
		t.Fatalf("btcd B at height %d, A at %d: no sync through the proxy (%v)\n--- B ---\n%s\n--- A ---\n%s", got, want, err, b.logTail(), a.logTail())
	}

	// B's only peer is A, reached over the client's circuit for B's
	// SOCKS credentials.
	peers, err := b.rpc.GetPeerInfo()
	if err != nil {
		t.Fatalf("btcd B getpeerinfo: %v", err)
	}
	if len(peers) != 1 || peers[0].Inbound || peers[0].Addr != loopbackAddr(aP2P) {
		t.Fatalf("btcd B peers %+v, want one outbound peer %s", peers, loopbackAddr(aP2P))
	}
	c, ok := circuitFor(d.Client, "btcd-b")
	if !ok || c.Streams < 1 {
		t.Fatalf("no circuit with an open stream for btcd B's proxy user: %+v", d.Client.Circuits())
	}
	checkPath(t, d, c, 3)
	// Neither daemon mentions an address off loopback in its log: no
	// seeds, no discovered peers, no external address. (B's log does name
	// its peer A, so the scan reads the right text.)
	if !strings.Contains(b.logTail(), loopbackAddr(aP2P)) {
		t.Fatalf("btcd B's log never names its peer %s:\n%s", loopbackAddr(aP2P), b.logTail())
	}
	for _, p := range []*btcdProc{a, b} {
		if ips := offLoopbackIPs(p.logTail()); len(ips) > 0 {
			t.Fatalf("btcd log %s mentions non-loopback addresses %v", p.logPath, ips)
		}
	}
	t.Logf("btcd B synced %d blocks from A over circuit %d %v", got, c.ID, c.Path)
}

// ipv4Re finds dotted IPv4 addresses in log text.
var ipv4Re = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b`)

// offLoopbackIPs returns the IP addresses in log that are neither loopback
// nor unspecified.
func offLoopbackIPs(log string) []string {
	var out []string
	for _, s := range ipv4Re.FindAllString(log, -1) {
		if a, err := netip.ParseAddr(s); err == nil && !a.IsLoopback() && !a.IsUnspecified() {
			out = append(out, s)
		}
	}
	return out
}

// btcdProc is one btcd process owned by a test; Cleanup stops it.
type btcdProc struct {
	cmd     *exec.Cmd
	rpc     *rpcclient.Client
	logPath string
	done    chan error // receives cmd.Wait's result once
}

func (p *btcdProc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return err.Error()
	}
	if len(b) > 64<<10 {
		b = b[len(b)-64<<10:]
	}
	return string(b)
}

// startBtcd runs btcd on regtest with RPC (no TLS, loopback only) on rpcPort
// plus extra flags, and waits until its RPC answers.
func startBtcd(ctx context.Context, t *testing.T, bin, name string, rpcPort int, extra ...string) *btcdProc {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "btcd-"+name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// An empty config file of our own, so btcd neither reads nor writes
	// one under $HOME.
	conf := filepath.Join(dir, "btcd.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--configfile=" + conf,
		"--regtest",
		"--datadir=" + filepath.Join(dir, "data"),
		"--logdir=" + filepath.Join(dir, "logs"),
		"--rpclisten=" + loopbackAddr(rpcPort),
		"--rpcuser=u", "--rpcpass=p", "--notls",
		"--nodnsseed",
		"--nobanning",
		"--debuglevel=info",
	}, extra...)
	p := &btcdProc{logPath: filepath.Join(dir, "out.log"), done: make(chan error, 1)}
	lf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = []string{"HOME=" + dir}
	p.cmd.Stdout, p.cmd.Stderr = lf, lf
	if err := p.cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start btcd %s: %v", name, err)
	}
	go func() {
		p.done <- p.cmd.Wait()
		lf.Close()
	}()
	t.Cleanup(func() { p.stop(t) })

	p.rpc, err = rpcclient.New(&rpcclient.ConnConfig{
		Host: loopbackAddr(rpcPort), User: "u", Pass: "p",
		HTTPPostMode: true, DisableTLS: true,
	}, nil)
	if err != nil {
		t.Fatalf("btcd %s rpc client: %v", name, err)
	}
	err = poll(ctx, func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			return true
		default:
		}
		_, err := p.rpc.GetBlockCount()
		return err == nil
	})
	select {
	case werr := <-p.done:
		p.done <- werr
		t.Fatalf("btcd %s exited during startup: %v\n%s", name, werr, p.logTail())
	default:
	}
	if err != nil {
		t.Fatalf("btcd %s RPC not ready: %v\n%s", name, err, p.logTail())
	}
	return p
}

// stop shuts down the RPC client, then btcd (SIGTERM, SIGKILL after 30s).
func (p *btcdProc) stop(t *testing.T) {
	if p.rpc != nil {
		p.rpc.Shutdown()
		p.rpc.WaitForShutdown()
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Logf("signal btcd: %v", err)
	}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.cmd.Process.Kill()
		<-p.done
		t.Errorf("btcd did not stop within 30s of SIGTERM\n%s", p.logTail())
	}
}

// regtestAddress is a fresh regtest P2WKH address whose key is thrown away:
// the test's coinbase outputs are never spent.
func regtestAddress() (string, error) {
	k, err := btcec.NewPrivateKey()
	if err != nil {
		return "", err
	}
	a, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		return "", err
	}
	return a.EncodeAddress(), nil
}

// freeLoopbackPorts asks the kernel for n distinct free 127.0.0.1 TCP ports.
// They are released before use, so another process could take one in
// between; btcd then fails to bind and the test says so.
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func loopbackAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
