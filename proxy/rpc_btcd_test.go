package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

// regtestBtcd is a real btcd on regtest, RPC on loopback without TLS.
type regtestBtcd struct {
	rpcAddr string
	rpc     *rpcclient.Client // direct, HTTP POST mode
	logPath string
	done    chan error // cmd.Wait's result, buffered
	cmd     *exec.Cmd
}

const (
	btcdUser = "btcduser"
	btcdPass = "btcdpass"
)

// startRegtestBtcd starts btcd from the daemon cache (built once per
// machine by `go run ./internal/regtest/cmd/ensure-daemons`) with no peers,
// no DNS seeds and RPC on a free loopback port, and mines blocks to a
// thrown-away key. t stops it.
func startRegtestBtcd(ctx context.Context, t *testing.T, bin string, blocks uint32) *regtestBtcd {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "btcd.conf")
	if err := os.WriteFile(conf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rpcAddr := l.Addr().String()
	l.Close() // btcd binds it next; a race with another process fails loudly below
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	mining, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	b := &regtestBtcd{rpcAddr: rpcAddr, logPath: filepath.Join(dir, "out.log"), done: make(chan error, 1)}
	lf, err := os.Create(b.logPath)
	if err != nil {
		t.Fatal(err)
	}
	b.cmd = exec.Command(bin,
		"--configfile="+conf, "--regtest",
		"--datadir="+filepath.Join(dir, "data"), "--logdir="+filepath.Join(dir, "logs"),
		"--rpclisten="+rpcAddr, "--rpcuser="+btcdUser, "--rpcpass="+btcdPass, "--notls",
		"--nolisten", "--nodnsseed", "--nobanning", "--miningaddr="+mining.EncodeAddress(),
	)
	b.cmd.Env = []string{"HOME=" + dir}
	b.cmd.Stdout, b.cmd.Stderr = lf, lf
	if err := b.cmd.Start(); err != nil {
		lf.Close()
		t.Fatalf("start btcd: %v", err)
	}
	go func() { // owned: ends when btcd exits, which the cleanup ensures
		b.done <- b.cmd.Wait()
		lf.Close()
	}()
	t.Cleanup(func() { b.stop(t) })

	b.rpc, err = rpcclient.New(&rpcclient.ConnConfig{
		Host: rpcAddr, User: btcdUser, Pass: btcdPass, HTTPPostMode: true, DisableTLS: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = pollUntil(ctx, func() bool {
		_, err := b.rpc.GetBlockCount()
		return err == nil || b.exited()
	})
	if err != nil || b.exited() {
		t.Fatalf("btcd RPC not ready (%v)\n%s", err, b.logTail())
	}
	if _, err := b.rpc.Generate(blocks); err != nil {
		t.Fatalf("btcd generate: %v\n%s", err, b.logTail())
	}
	return b
}

func (b *regtestBtcd) exited() bool {
	select {
	case err := <-b.done:
		b.done <- err
		return true
	default:
		return false
	}
}

func (b *regtestBtcd) logTail() string {
	data, _ := os.ReadFile(b.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

func (b *regtestBtcd) stop(t *testing.T) {
	b.rpc.Shutdown()
	b.rpc.WaitForShutdown()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Logf("signal btcd: %v", err)
	}
	timer := time.NewTimer(30 * time.Second)
	defer timer.Stop()
	select {
	case <-b.done:
	case <-timer.C:
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Errorf("btcd did not stop within 30s of SIGTERM")
	}
}

// pollUntil calls f until it returns true or ctx ends.
func pollUntil(ctx context.Context, f func() bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !f() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// decodingBroadcaster stands in for node's mempool client: it decodes the
// transaction with btcd's wire package, answers -22 as bitcoind does for
// one that does not decode, and returns the txid.
type decodingBroadcaster struct {
	mu    sync.Mutex
	got   []string   // guarded by mu
	rates []*float64 // guarded by mu
}

func (d *decodingBroadcaster) broadcast(_ context.Context, hexTx string, rate *float64) (string, error) {
	d.mu.Lock()
	d.got = append(d.got, hexTx)
	d.rates = append(d.rates, rate)
	d.mu.Unlock()
	raw, err := hex.DecodeString(hexTx)
	var tx wire.MsgTx
	if err == nil {
		err = tx.Deserialize(bytes.NewReader(raw))
	}
	if err != nil || len(tx.TxIn) == 0 {
		return "", &RPCError{RPCDeserializationError, "TX decode failed. Make sure the tx has at least one input."}
	}
	return tx.TxHash().String(), nil
}

func (d *decodingBroadcaster) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.got)
}

// testTx is a well-formed transaction (its input spends nothing real: the
// broadcaster here only decodes it).
func testTx(t *testing.T) (*wire.MsgTx, string) {
	t.Helper()
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{1, 2, 3}, 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(5000, []byte{0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}))
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return tx, hex.EncodeToString(b.Bytes())
}

// TestRPCBtcdUpstream runs the front end in front of a real regtest btcd:
// btcd's rpcclient in HTTP POST mode (as lnd's bitcoind backend uses it),
// btcctl and curl get chain answers from btcd through pass-through, and
// their sendrawtransaction reaches the Broadcast func, never btcd.
func TestRPCBtcdUpstream(t *testing.T) {
	if testing.Short() {
		t.Skip("starts btcd")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Minute)
	defer cancel()
	bins, err := regtest.EnsureBinaries(ctx, "", nil)
	if err != nil {
		t.Fatalf("daemon binaries (go run ./internal/regtest/cmd/ensure-daemons): %v", err)
	}
	btcd := startRegtestBtcd(ctx, t, bins.Btcd, 12)

	d := &decodingBroadcaster{}
	s := startRPC(t, func(c *RPCConfig) {
		c.Broadcast = d.broadcast
		c.Upstream = &RPCUpstream{URL: btcd.rpcAddr, User: btcdUser, Password: btcdPass}
	})
	addr := strings.TrimPrefix(s.url, "http://")
	tx, txHex := testTx(t)

	t.Run("rpcclient", func(t *testing.T) {
		c, err := rpcclient.New(&rpcclient.ConnConfig{
			Host: addr, User: testRPCUser, Pass: testRPCPass, HTTPPostMode: true, DisableTLS: true,
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { c.Shutdown(); c.WaitForShutdown() }()

		n, err := c.GetBlockCount()
		if err != nil || n != 12 {
			t.Fatalf("GetBlockCount through the proxy: %d, %v; want 12", n, err)
		}
		want, err := btcd.rpc.GetBestBlockHash()
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.GetBestBlockHash()
		if err != nil || !got.IsEqual(want) {
			t.Fatalf("GetBestBlockHash through the proxy: %v, %v; btcd says %v", got, err, want)
		}
		blk, err := c.GetBlock(want)
		if err != nil || blk.BlockHash() != *want {
			t.Fatalf("GetBlock through the proxy: %v", err)
		}
		if _, err := c.GetBlockHash(1000); err == nil {
			t.Fatal("GetBlockHash(1000) through the proxy: no error from btcd")
		}

		before := d.count()
		// rpcclient first asks getinfo (answered by btcd through us) to
		// pick btcd's argument style, then sends [hex, false].
		h, err := c.SendRawTransaction(tx, false)
		if err != nil {
			t.Fatalf("SendRawTransaction through the proxy: %v", err)
		}
		if *h != tx.TxHash() {
			t.Fatalf("txid %v, want %v", h, tx.TxHash())
		}
		if d.count() != before+1 {
			t.Fatal("SendRawTransaction did not reach Broadcast")
		}
		if _, err := c.SendRawTransaction(wire.NewMsgTx(2), true); err == nil || !strings.Contains(err.Error(), "-22") {
			t.Fatalf("empty transaction: %v, want -22", err)
		}
		// This rpcclient sends bitcoind's maxfeerate to a btcd ≥ 0.24
		// backend: 0.1 BTC/kvB, or 0 (no limit) for allowHighFees.
		d.mu.Lock()
		rates := d.rates[len(d.rates)-2:]
		d.mu.Unlock()
		if rates[0] == nil || *rates[0] != 0.1 || rates[1] == nil || *rates[1] != 0 {
			t.Fatalf("fee rates passed to Broadcast: %v, %v; want 0.1, 0", rates[0], rates[1])
		}
		// btcd never saw either transaction.
		if pool, err := btcd.rpc.GetRawMempool(); err != nil || len(pool) != 0 {
			t.Fatalf("btcd mempool %v (%v), want empty", pool, err)
		}
	})

	t.Run("btcctl", func(t *testing.T) {
		home := t.TempDir()
		// An empty config file of our own, so btcctl neither reads nor
		// creates one under $HOME.
		if err := os.WriteFile(filepath.Join(home, "none.conf"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		btcctl := func(args ...string) (string, error) {
			cmd := exec.CommandContext(ctx, bins.Btcctl, append([]string{
				"--configfile=" + filepath.Join(home, "none.conf"),
				"--rpcserver=" + addr, "--rpcuser=" + testRPCUser, "--rpcpass=" + testRPCPass, "--notls",
			}, args...)...)
			cmd.Env = []string{"HOME=" + home}
			out, err := cmd.CombinedOutput()
			return strings.TrimSpace(string(out)), err
		}
		out, err := btcctl("getblockcount")
		if err != nil || out != "12" {
			t.Fatalf("btcctl getblockcount: %q, %v", out, err)
		}
		out, err = btcctl("sendrawtransaction", txHex)
		if err != nil || out != tx.TxHash().String() {
			t.Fatalf("btcctl sendrawtransaction: %q, %v; want %v", out, err, tx.TxHash())
		}
		out, err = btcctl("sendrawtransaction", "00")
		if err == nil || !strings.Contains(out, "-22") {
			t.Fatalf("btcctl sendrawtransaction 00: %q, %v; want -22", out, err)
		}
		cmd := exec.CommandContext(ctx, bins.Btcctl, "--configfile="+filepath.Join(home, "none.conf"),
			"--rpcserver="+addr, "--rpcuser="+testRPCUser, "--rpcpass=wrong", "--notls", "getblockcount")
		cmd.Env = []string{"HOME=" + home}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Fatalf("btcctl with a wrong password: %q, no error", out)
		}
	})

	t.Run("curl with the cookie", func(t *testing.T) {
		cookie, err := readCookie(s.CookiePath())
		if err != nil {
			t.Fatal(err)
		}
		curl := func(body string) string {
			return runCurl(t, "--user", cookie, "--data-binary", body,
				"-H", "content-type: text/plain;", "http://"+addr+"/")
		}
		got := curl(`{"jsonrpc":"1.0","id":"curltest","method":"sendrawtransaction","params":["` + txHex + `"]}`)
		if want := `{"result":"` + tx.TxHash().String() + `","error":null,"id":"curltest"}` + "\n"; got != want {
			t.Fatalf("curl sendrawtransaction: %s, want %s", got, want)
		}
		got = curl(`{"jsonrpc":"2.0","id":1,"method":"getblockcount","params":[]}`)
		if !strings.Contains(got, `"result":12`) {
			t.Fatalf("curl getblockcount through the proxy: %s", got)
		}
		got = curl(`[{"jsonrpc":"1.0","id":1,"method":"getblockcount","params":[]},` +
			`{"jsonrpc":"1.0","id":2,"method":"sendrawtransaction","params":["` + txHex + `"]},` +
			`{"jsonrpc":"1.0","id":3,"method":"getblockhash","params":[0]}]`)
		genesis := chaincfg.RegressionNetParams.GenesisHash.String()
		if !strings.Contains(got, `"result":12`) || !strings.Contains(got, tx.TxHash().String()) || !strings.Contains(got, genesis) ||
			strings.Index(got, `"result":12`) > strings.Index(got, genesis) {
			t.Fatalf("curl mixed batch: %s", got)
		}
	})
}
