package devnet

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/co-infuse/co-infuse/internal/regtest"
	"github.com/co-infuse/co-infuse/mempool"
	"github.com/co-infuse/co-infuse/node"
)

// testKey is a regtest P2WKH key the test controls, with coins the harness
// sent it (regtest.Network.Fund) and a fan-out of those into many outputs.
type testKey struct {
	key    *btcec.PrivateKey
	addr   btcutil.Address
	script []byte

	mu    sync.Mutex
	coins []coin // guarded by mu: confirmed, unspent
}

type coin struct {
	op    wire.OutPoint
	value int64
}

func newTestKey(t testing.TB) *testKey {
	t.Helper()
	k, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	s, err := txscript.PayToAddrScript(a)
	if err != nil {
		t.Fatal(err)
	}
	return &testKey{key: k, addr: a, script: s}
}

// spend builds and signs a transaction spending ins to outs (values paid
// to the key's own script).
func (k *testKey) spend(t testing.TB, ins []coin, outs []int64) *wire.MsgTx {
	t.Helper()
	tx := wire.NewMsgTx(2)
	prev := txscript.NewMultiPrevOutFetcher(nil)
	for _, c := range ins {
		tx.AddTxIn(wire.NewTxIn(&c.op, nil, nil))
		prev.AddPrevOut(c.op, wire.NewTxOut(c.value, k.script))
	}
	for _, v := range outs {
		tx.AddTxOut(wire.NewTxOut(v, k.script))
	}
	hashes := txscript.NewTxSigHashes(tx, prev)
	for i, c := range ins {
		w, err := txscript.WitnessSignature(tx, hashes, i, c.value, k.script, txscript.SigHashAll, k.key, true)
		if err != nil {
			t.Fatal(err)
		}
		tx.TxIn[i].Witness = w
	}
	return tx
}

// take returns a confirmed unspent coin of the key.
func (k *testKey) take(t testing.TB) coin {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.coins) == 0 {
		t.Fatal("test key has no coins left")
	}
	c := k.coins[len(k.coins)-1]
	k.coins = k.coins[:len(k.coins)-1]
	return c
}

// spendOne is a valid transaction spending one fresh coin back to the key
// (fee 2,000 sat).
func (k *testKey) spendOne(t testing.TB) *wire.MsgTx {
	c := k.take(t)
	return k.spend(t, []coin{c}, []int64{c.value - 2000})
}

// fund gives the key a coinbase from the harness, split into n coins, and
// confirms it.
func (k *testKey) fund(ctx context.Context, t testing.TB, chain *regtest.Network, direct *rpcclient.Client, n int) {
	t.Helper()
	txid, amount, err := chain.Fund(ctx, k.addr.EncodeAddress())
	if err != nil {
		t.Fatalf("fund test key: %v", err)
	}
	var h chainhash.Hash
	if err := chainhash.Decode(&h, txid); err != nil {
		t.Fatal(err)
	}
	each := (amount - 100_000) / int64(n)
	outs := make([]int64, n)
	for i := range outs {
		outs[i] = each
	}
	fan := k.spend(t, []coin{{op: *wire.NewOutPoint(&h, 0), value: amount}}, outs)
	if _, err := direct.SendRawTransaction(fan, true); err != nil {
		t.Fatalf("fan-out: %v", err)
	}
	if err := chain.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	fh := fan.TxHash()
	k.mu.Lock()
	for i := range outs {
		k.coins = append(k.coins, coin{op: *wire.NewOutPoint(&fh, uint32(i)), value: each})
	}
	k.mu.Unlock()
}

func txHex(t testing.TB, tx *wire.MsgTx) string {
	t.Helper()
	var b bytes.Buffer
	if err := tx.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b.Bytes())
}

// directBtcd is an RPC client of the harness's btcd.
func directBtcd(t testing.TB, chain *regtest.Network) *rpcclient.Client {
	t.Helper()
	host, user, pass, cert := chain.BtcdRPC()
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rpcclient.New(&rpcclient.ConnConfig{Host: host, User: user, Pass: pass, Certificates: pem, HTTPPostMode: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(); c.WaitForShutdown() })
	return c
}

// cookieAuth reads the client's RPC cookie: user, password.
func cookieAuth(t testing.TB, d *Devnet) (string, string) {
	t.Helper()
	raw, err := os.ReadFile(d.Client.RPCCookie())
	if err != nil {
		t.Fatalf("rpc cookie: %v", err)
	}
	u, p, ok := strings.Cut(strings.TrimSpace(string(raw)), ":")
	if !ok {
		t.Fatalf("rpc cookie %q is not user:password", raw)
	}
	return u, p
}

// coinfuseRPC is a btcd rpcclient (HTTP POST mode, as lnd's bitcoind
// backend uses it) pointed at the client's JSON-RPC port.
func coinfuseRPC(t testing.TB, d *Devnet) *rpcclient.Client {
	t.Helper()
	c, err := rpcclient.New(&rpcclient.ConnConfig{
		Host: d.Client.RPCAddr().String(), CookiePath: d.Client.RPCCookie(),
		HTTPPostMode: true, DisableTLS: true,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Shutdown(); c.WaitForShutdown() })
	return c
}

// sendRaw calls sendrawtransaction with only the hex and returns the txid
// or the RPC error.
func sendRaw(c *rpcclient.Client, hexTx string) (string, error) {
	p, _ := json.Marshal(hexTx)
	res, err := c.RawRequest("sendrawtransaction", []json.RawMessage{p})
	if err != nil {
		return "", err
	}
	var id string
	if err := json.Unmarshal(res, &id); err != nil {
		return "", err
	}
	return id, nil
}

func rpcCode(err error) int {
	var re *btcjson.RPCError
	if errors.As(err, &re) {
		return int(re.Code)
	}
	return 0
}

// inMempool asks btcd's getrawmempool (btcd 0.24 has no getmempoolentry).
func inMempool(c *rpcclient.Client, txid string) bool {
	ids, err := c.GetRawMempool()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(ids, func(h *chainhash.Hash) bool { return h.String() == txid })
}

// mempoolDevnet is a devnet with three delivery nodes; upstream, if not
// "", is the client's pass-through node (user u, password p).
func mempoolDevnet(t *testing.T, upstream string) *Devnet {
	return startTestDevnet(t, Options{
		Relays: 3, Exits: 1, Mempool: 3, RPCListen: "127.0.0.1:0", WebListen: "off",
		Configure: func(name string, cfg *node.Config) {
			if name == "client" {
				cfg.Mempool.RPC.Upstream = upstream
				cfg.Mempool.RPC.UpstreamUser, cfg.Mempool.RPC.UpstreamPassword = "u", "p"
			}
		},
	})
}

// TestE2EMempool: three delivery nodes backed by the harness's real
// regtest btcd; transactions of a key the test controls go through the
// client's JSON-RPC port by btcctl, curl with the cookie and btcd's
// rpcclient, and land in btcd's mempool with the txid btcd gives;
// invalid ones get btcd's own codes; a transaction queued in the outbox
// before a crash is delivered by the restarted client; the delivery nodes
// saw only previous hops; other methods pass through to an upstream btcd.
func TestE2EMempool(t *testing.T) {
	skipShort(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	bins, err := regtest.EnsureBtcd(ctx, "", nil)
	if err != nil {
		t.Fatalf("btcd binary: %v", err)
	}
	// The pass-through upstream: a btcd of its own (plain HTTP, as the
	// front end's upstream must be), a few blocks ahead of genesis.
	upPort := freeLoopbackPorts(t, 1)[0]
	mining, err := regtestAddress()
	if err != nil {
		t.Fatal(err)
	}
	up := startBtcd(ctx, t, bins.Btcd, "upstream", upPort, "--nolisten", "--miningaddr="+mining)
	if _, err := up.rpc.Generate(7); err != nil {
		t.Fatalf("upstream generate: %v", err)
	}

	d := mempoolDevnet(t, loopbackAddr(upPort))
	direct := directBtcd(t, d.Chain)
	key := newTestKey(t)
	key.fund(ctx, t, d.Chain, direct, 20)
	rpcAddr := d.Client.RPCAddr().String()
	user, pass := cookieAuth(t, d)
	t.Logf("json-rpc %s, cookie %s", rpcAddr, d.Client.RPCCookie())

	t.Run("btcctl", func(t *testing.T) {
		tx := key.spendOne(t)
		want := tx.TxHash().String()
		home := t.TempDir()
		cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(bins.Btcd), "btcctl"),
			"--configfile="+filepath.Join(home, "none.conf"), "--regtest", "--notls",
			"-s", rpcAddr, "-u", user, "-P", pass, "sendrawtransaction", txHex(t, tx))
		cmd.Env = []string{"HOME=" + home}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("btcctl sendrawtransaction: %v\n%s", err, out)
		}
		// btcctl may first complain that it cannot write a default
		// config; the txid is its last line.
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if got := lines[len(lines)-1]; got != want {
			t.Fatalf("btcctl printed %q, want txid %s", got, want)
		}
		if !inMempool(direct, want) {
			t.Fatal("accepted through co-infuse but not in btcd's mempool")
		}
	})

	t.Run("curl", func(t *testing.T) {
		tx := key.spendOne(t)
		want := tx.TxHash().String()
		body := fmt.Sprintf(`{"jsonrpc":"1.0","id":"curltest","method":"sendrawtransaction","params":["%s"]}`, txHex(t, tx))
		r := mustCurl(ctx, t, "--user", user+":"+pass, "-H", "content-type: text/plain;", "--data-binary", body, "http://"+rpcAddr+"/")
		var resp struct {
			Result string          `json:"result"`
			Error  json.RawMessage `json:"error"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || resp.Result != want {
			t.Fatalf("curl got %s (%v), want result %s", r.stdout, err, want)
		}
		if !inMempool(direct, want) {
			t.Fatal("accepted through co-infuse but not in btcd's mempool")
		}
		// Sent again: bitcoind answers a transaction in its mempool with
		// its txid, and so does co-infuse.
		_, derr := sendRaw(direct, txHex(t, tx))
		t.Logf("btcd directly, for a transaction in its mempool: %v", derr)
		if id, err := sendRaw(coinfuseRPC(t, d), txHex(t, tx)); err != nil || id != want {
			t.Fatalf("resend: %q, %v", id, err)
		}
	})

	t.Run("invalid has btcd's codes", func(t *testing.T) {
		cf := coinfuseRPC(t, d)
		missing := key.spend(t, []coin{{op: *wire.NewOutPoint(&chainhash.Hash{9, 9, 9}, 0), value: 50_000}}, []int64{40_000})
		c := key.take(t)
		badSig := key.spend(t, []coin{c}, []int64{c.value - 2000})
		badSig.TxIn[0].Witness[0][10] ^= 1
		for _, tc := range []struct{ name, hex string }{
			{"not hex", "zz"},
			{"truncated", txHex(t, missing)[:40]},
			{"missing inputs", txHex(t, missing)},
			{"bad signature", txHex(t, badSig)},
		} {
			_, derr := sendRaw(direct, tc.hex)
			_, cerr := sendRaw(cf, tc.hex)
			if derr == nil || cerr == nil || rpcCode(derr) != rpcCode(cerr) {
				t.Errorf("%s: btcd says %v (code %d), co-infuse %v (code %d)", tc.name, derr, rpcCode(derr), cerr, rpcCode(cerr))
			} else {
				t.Logf("%s: code %d from both (btcd %q, co-infuse %q)", tc.name, rpcCode(derr), derr, cerr)
			}
		}
	})

	t.Run("maxfeerate", func(t *testing.T) {
		// About 18 sat/vB; a cap of 1 sat/vB (0.00001 BTC/kvB) refuses
		// it with bitcoind's -25, and the transaction is not queued.
		tx := key.spendOne(t)
		h, _ := json.Marshal(txHex(t, tx))
		res, err := coinfuseRPC(t, d).RawRequest("sendrawtransaction", []json.RawMessage{h, json.RawMessage("0.00001")})
		if rpcCode(err) != -25 || !strings.Contains(err.Error(), "Fee exceeds maximum") {
			t.Fatalf("over the fee cap: %s, %v; want -25", res, err)
		}
		if q, _ := d.Client.Mempool().Queued(); slices.ContainsFunc(q, func(e mempool.Entry) bool { return e.TxID == tx.TxHash().String() }) {
			t.Fatal("a transaction refused for its fee is still queued")
		}
		// Under a cap it fits, it is delivered.
		res, err = coinfuseRPC(t, d).RawRequest("sendrawtransaction", []json.RawMessage{h, json.RawMessage("0.1")})
		if err != nil || !inMempool(direct, tx.TxHash().String()) {
			t.Fatalf("under the fee cap: %s, %v", res, err)
		}
	})

	t.Run("pass-through", func(t *testing.T) {
		want, err := up.rpc.GetBlockCount()
		if err != nil {
			t.Fatal(err)
		}
		got, err := coinfuseRPC(t, d).GetBlockCount()
		if err != nil || got != want {
			t.Fatalf("getblockcount through co-infuse: %d, %v; upstream says %d", got, err, want)
		}
		h, err := coinfuseRPC(t, d).GetBestBlockHash()
		wh, _ := up.rpc.GetBestBlockHash()
		if err != nil || !h.IsEqual(wh) {
			t.Fatalf("getbestblockhash through co-infuse: %v, %v; upstream says %v", h, err, wh)
		}
	})

	t.Run("outbox drains and delivery nodes saw only hops", func(t *testing.T) {
		pctx, pcancel := context.WithTimeout(ctx, time.Minute)
		defer pcancel()
		if err := poll(pctx, func() bool { q, _ := d.Client.Mempool().Queued(); return len(q) == 0 }); err != nil {
			q, _ := d.Client.Mempool().Queued()
			t.Fatalf("outbox not drained (no echo?): %+v", q)
		}
		checkOrigins(t, d, 2)
	})

	t.Run("restart delivers a queued tx once", func(t *testing.T) {
		tx := key.spendOne(t)
		want := tx.TxHash().String()
		cfg := d.Client.Config()
		if err := d.Client.Close(); err != nil {
			t.Fatal(err)
		}
		// What a crash right after sendrawtransaction wrote the outbox
		// leaves behind: the transaction on disk, nothing sent.
		ob, err := mempool.OpenOutbox(filepath.Join(cfg.DataDir, node.OutboxFile), 0)
		if err != nil {
			t.Fatal(err)
		}
		var raw bytes.Buffer
		_ = tx.Serialize(&raw)
		if _, err := ob.Add(mempool.Entry{TxID: want, Raw: raw.Bytes(), Added: time.Now()}); err != nil {
			t.Fatal(err)
		}
		ob.Close()
		if inMempool(direct, want) {
			t.Fatal("in the mempool before the restart")
		}
		before := deliverySubmits(d)
		n, err := node.New(cfg, node.WithLogger(node.NewLogger(os.Stderr, "warn")))
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(ctx); err != nil {
			t.Fatal(err)
		}
		d.Nodes[len(d.Nodes)-1], d.Client = n, n
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer pcancel()
		if err := poll(pctx, func() bool {
			q, _ := n.Mempool().Queued()
			return inMempool(direct, want) && len(q) == 0
		}); err != nil {
			q, _ := n.Mempool().Queued()
			t.Fatalf("queued tx not delivered after restart: in mempool %v, outbox %+v", inMempool(direct, want), q)
		}
		if st := n.Mempool().Stats(); st.Delivered != 1 {
			t.Fatalf("restarted client stats %+v, want one delivered", st)
		}
		if got := deliverySubmits(d) - before; got < 1 || got > 2 {
			t.Fatalf("%d SUBMITs for one queued tx, want one round (1 or 2 delivery nodes)", got)
		}
	})
}

// deliverySubmits sums SUBMITs over the delivery nodes.
func deliverySubmits(d *Devnet) uint64 {
	var n uint64
	for _, nd := range d.Nodes {
		if st, ok := nd.DeliveryStats(); ok {
			n += st.Submits
		}
	}
	return n
}

// checkOrigins asserts that at least min delivery nodes took SUBMITs and
// that every stream a delivery node served came from a previous hop: never
// the client's peer ID, never one of the client's addresses.
func checkOrigins(t *testing.T, d *Devnet, min int) {
	t.Helper()
	client := d.Client.ID().String()
	var clientAddrs []string
	for _, a := range d.Client.Host().Addrs() {
		clientAddrs = append(clientAddrs, a.String())
	}
	used := 0
	for _, nd := range d.Nodes {
		st, ok := nd.DeliveryStats()
		if !ok {
			continue
		}
		if st.Submits > 0 {
			used++
		}
		for _, o := range st.Origins {
			if o.Peer == client {
				t.Errorf("delivery node %s saw the client %s as the stream's sender", nd.ID(), client)
			}
			for _, a := range o.Addrs {
				if slices.Contains(clientAddrs, a) {
					t.Errorf("delivery node %s saw the client's address %s", nd.ID(), a)
				}
			}
		}
		t.Logf("delivery node %s: %d submits, %d accepted, %d rejected, %d queries; senders %v", nd.ID(), st.Submits, st.Accepted, st.Rejected, st.Queries, st.Origins)
	}
	if used < min {
		t.Errorf("%d delivery nodes took SUBMITs, want at least %d", used, min)
	}
}
