package dockertest

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/co-infuse/co-infuse/internal/regtest"
)

// The regtest Lightning network in containers: btcd and two lnd run from
// the binaries internal/regtest builds on the host (bind-mounted read-only
// at /daemons) in containers of the builder base image, which is the
// Debian the host binaries were built on. Everything runs as the image's
// user 10001, so co-infuse (the same user) can read lnd's tls.cert and
// admin.macaroon from the lnddir it mounts read-only.
const (
	lnUID        = "10001:10001"
	btcdRPCUser  = "coinfuse"
	lnChannelSat = 1_000_000
	// segwitBlocks gets btcd's regtest past segwit activation (three
	// 144-block windows) and the first coinbases past maturity.
	segwitBlocks = 500
)

// lnNet is btcd, the payer lnd (the client's) and the payee lnd (every
// relay's and exit's) in containers on a Docker network of their own, with
// an active channel payer → payee.
type lnNet struct {
	t       testing.TB
	prefix  string // container name prefix
	network string // Docker network name
	dir     string // host directory: btcd/, payer/, payee/
	binDir  string // host directory of the daemons, mounted at /daemons
	rpcPass string

	minerKey     *btcec.PrivateKey
	minerScript  []byte
	nextCoinbase int64

	payeePub string
}

// startLightning starts the regtest Lightning network and returns once the
// payer can route to the payee. Everything is removed in t.Cleanup.
func startLightning(t testing.TB, ctx context.Context) *lnNet {
	t.Helper()
	needDocker(t)
	if _, err := run(ctx, "docker", "image", "inspect", builderImage); err != nil {
		t.Fatalf("the builder base %s (docker/build-image.sh makes it) is missing: %v", builderImage, err)
	}
	// scripts/test.sh builds the daemons before the tests; on a machine
	// where another process is building them this waits on its lock.
	bins, err := regtest.EnsureBinaries(ctx, "", nil)
	if err != nil {
		t.Fatalf("regtest daemons: %v", err)
	}
	binDir := filepath.Dir(bins.Lnd)

	key, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	minerAddr, err := btcutil.NewAddressWitnessPubKeyHash(
		btcutil.Hash160(key.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	script, err := txscript.PayToAddrScript(minerAddr)
	if err != nil {
		t.Fatal(err)
	}
	l := &lnNet{
		t:            t,
		prefix:       "coinfuse-ln" + uniq(),
		dir:          t.TempDir(),
		rpcPass:      uniq() + uniq(),
		minerKey:     key,
		minerScript:  script,
		nextCoinbase: 1,
	}
	l.network = l.prefix
	l.binDir = binDir
	for _, d := range []string{"btcd", "payer", "payee"} {
		p := filepath.Join(l.dir, d)
		if err := os.Mkdir(p, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 10001, 10001); err != nil {
			t.Skipf("container test: cannot give %s to the containers' user 10001: %v", p, err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			for _, c := range []string{"btcd", "lnd-payer", "lnd-payee"} {
				out, _ := run(ctx, "docker", "logs", "--tail", "30", l.prefix+"-"+c)
				t.Logf("%s logs:\n%s", c, out)
			}
		}
		run(ctx, "docker", "rm", "-f", "-v", l.prefix+"-btcd", l.prefix+"-lnd-payer", l.prefix+"-lnd-payee")
		run(ctx, "docker", "network", "rm", l.network)
		// The daemons' files belong to 10001; the test's TempDir cleanup
		// removes them as root, or fails to as anyone else.
	})
	octet := freeSlash16s(t, ctx, 1)[0]
	docker(t, ctx, "network", "create", "--subnet", fmt.Sprintf("10.%d.0.0/16", octet), l.network)

	common := func(name, home string) []string {
		return []string{"run", "-d", "--name", l.prefix + "-" + name, "--hostname", name,
			"--network", l.network, "--network-alias", name, "--user", lnUID, "--init",
			"-e", "HOME=" + home, "-v", binDir + ":/daemons:ro"}
	}
	args := append(common("btcd", "/btcd"), "-v", filepath.Join(l.dir, "btcd")+":/btcd",
		builderImage, "/daemons/btcd", "--regtest",
		"--datadir=/btcd/data", "--logdir=/btcd/logs",
		"--rpccert=/btcd/rpc.cert", "--rpckey=/btcd/rpc.key",
		"--listen=127.0.0.1:18444", "--rpclisten=0.0.0.0:18334",
		"--rpcuser="+btcdRPCUser, "--rpcpass="+l.rpcPass,
		"--txindex", "--nobanning", "--miningaddr="+minerAddr.EncodeAddress())
	docker(t, ctx, args...)
	waitFor(t, ctx, "btcd's RPC", func() (bool, error) {
		_, err := l.btcctl(ctx, "getblockcount")
		return err == nil, err
	})
	for done := 0; done < segwitBlocks; done += 100 {
		if _, err := l.btcctl(ctx, "generate", "100"); err != nil {
			t.Fatalf("mining: %v", err)
		}
	}
	for _, side := range []string{"payer", "payee"} {
		args := append(common("lnd-"+side, "/lnd"),
			"-v", filepath.Join(l.dir, side)+":/lnd",
			"-v", filepath.Join(l.dir, "btcd")+":/btcd:ro",
			builderImage, "/daemons/lnd", "--lnddir=/lnd", "--alias="+side,
			"--noseedbackup", "--bitcoin.regtest", "--bitcoin.node=btcd",
			"--btcd.rpchost=btcd:18334", "--btcd.rpcuser="+btcdRPCUser,
			"--btcd.rpcpass="+l.rpcPass, "--btcd.rpccert=/btcd/rpc.cert",
			"--listen=0.0.0.0:9735", "--rpclisten=0.0.0.0:10009",
			"--tlsextradomain=lnd-"+side, "--norest", "--nobootstrap",
			"--trickledelay=50", "--healthcheck.diskspace.attempts=0")
		docker(t, ctx, args...)
	}
	tip := l.height(ctx)
	for _, side := range []string{"payer", "payee"} {
		l.waitSynced(ctx, side, tip)
	}
	var info struct {
		Pubkey string `json:"identity_pubkey"`
	}
	l.lncliJSON(ctx, "payee", &info, "getinfo")
	l.payeePub = info.Pubkey

	// Fund the payer from a mature coinbase, open the channel, confirm it.
	var addr struct {
		Address string `json:"address"`
	}
	l.lncliJSON(ctx, "payer", &addr, "newaddress", "p2wkh")
	sent := l.fund(ctx, addr.Address)
	l.mine(ctx, 1)
	waitFor(t, ctx, "the payer's confirmed wallet balance", func() (bool, error) {
		var bal struct {
			Confirmed string `json:"confirmed_balance"`
		}
		if err := l.lncliTry(ctx, "payer", &bal, "walletbalance"); err != nil {
			return false, err
		}
		n, _ := strconv.ParseInt(bal.Confirmed, 10, 64)
		return n >= sent, nil
	})
	waitFor(t, ctx, "the payer connected to the payee", func() (bool, error) {
		_, err := l.lncli(ctx, "payer", "connect", l.payeePub+"@lnd-payee:9735")
		if err != nil && strings.Contains(err.Error(), "already connected") {
			return true, nil
		}
		return err == nil, err
	})
	waitFor(t, ctx, "the channel opened", func() (bool, error) {
		_, err := l.lncli(ctx, "payer", "openchannel", "--node_key", l.payeePub, "--local_amt", strconv.Itoa(lnChannelSat))
		return err == nil, err
	})
	l.mine(ctx, 6)
	for _, side := range []string{"payer", "payee"} {
		waitFor(t, ctx, side+"'s channel active", func() (bool, error) {
			var ch struct {
				Channels []json.RawMessage `json:"channels"`
			}
			err := l.lncliTry(ctx, side, &ch, "listchannels", "--active_only")
			return len(ch.Channels) > 0, err
		})
	}
	waitFor(t, ctx, "a route payer → payee", func() (bool, error) {
		_, err := l.lncli(ctx, "payer", "queryroutes", "--dest", l.payeePub, "--amt", "10000")
		return err == nil, err
	})
	return l
}

// dirOf is the host directory of side's lnddir ("payer", "payee").
func (l *lnNet) dirOf(side string) string { return filepath.Join(l.dir, side) }

// composeEnv is what compose.lightning.yml needs to find this network.
func (l *lnNet) composeEnv() []string {
	return []string{
		"CO_INFUSE_LN_NETWORK=" + l.network,
		"CO_INFUSE_LN_PAYEE_DIR=" + l.dirOf("payee"),
		"CO_INFUSE_LN_PAYER_DIR=" + l.dirOf("payer"),
	}
}

func (l *lnNet) btcctl(ctx context.Context, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"exec", l.prefix + "-btcd", "/daemons/btcctl",
		"--regtest", "--rpcserver=localhost:18334", "--rpccert=/btcd/rpc.cert",
		"--rpcuser=" + btcdRPCUser, "--rpcpass=" + l.rpcPass}, args...)...)
}

func (l *lnNet) lncli(ctx context.Context, side string, args ...string) (string, error) {
	return run(ctx, "docker", append([]string{"exec", l.prefix + "-lnd-" + side, "/daemons/lncli",
		"--lnddir=/lnd", "--network=regtest", "--rpcserver=localhost:10009"}, args...)...)
}

// lncliTry runs lncli and decodes its JSON answer into v.
func (l *lnNet) lncliTry(ctx context.Context, side string, v any, args ...string) error {
	out, err := l.lncli(ctx, side, args...)
	if err != nil {
		return err
	}
	return json.Unmarshal([]byte(out), v)
}

// lncliJSON is lncliTry, retried until it works (lnd answers "still
// starting" for a while) or ctx ends.
func (l *lnNet) lncliJSON(ctx context.Context, side string, v any, args ...string) {
	l.t.Helper()
	waitFor(l.t, ctx, "lncli "+args[0]+" on "+side, func() (bool, error) {
		err := l.lncliTry(ctx, side, v, args...)
		return err == nil, err
	})
}

func (l *lnNet) height(ctx context.Context) int64 {
	l.t.Helper()
	out, err := l.btcctl(ctx, "getblockcount")
	if err != nil {
		l.t.Fatalf("getblockcount: %v", err)
	}
	h, err := strconv.ParseInt(out, 10, 64)
	if err != nil {
		l.t.Fatalf("getblockcount: %q", out)
	}
	return h
}

// waitSynced waits until side's lnd is synced to the chain at height h.
func (l *lnNet) waitSynced(ctx context.Context, side string, h int64) {
	l.t.Helper()
	waitFor(l.t, ctx, side+" synced to height "+strconv.FormatInt(h, 10), func() (bool, error) {
		var info struct {
			Synced bool  `json:"synced_to_chain"`
			Height int64 `json:"block_height"`
		}
		err := l.lncliTry(ctx, side, &info, "getinfo")
		return err == nil && info.Synced && info.Height >= h, err
	})
}

// mine mines n blocks and waits for both lnd to see them.
func (l *lnNet) mine(ctx context.Context, n int) {
	l.t.Helper()
	if _, err := l.btcctl(ctx, "generate", strconv.Itoa(n)); err != nil {
		l.t.Fatalf("generate %d: %v", n, err)
	}
	h := l.height(ctx)
	for _, side := range []string{"payer", "payee"} {
		l.waitSynced(ctx, side, h)
	}
}

// fund spends the next mature coinbase (all of them pay the test's miner
// key) to addr, less a fee, and returns the amount sent; the caller mines.
func (l *lnNet) fund(ctx context.Context, addr string) int64 {
	l.t.Helper()
	const fee = 10_000
	h := l.nextCoinbase
	l.nextCoinbase++
	hash, err := l.btcctl(ctx, "getblockhash", strconv.FormatInt(h, 10))
	if err != nil {
		l.t.Fatalf("getblockhash %d: %v", h, err)
	}
	out, err := l.btcctl(ctx, "getblock", hash)
	if err != nil {
		l.t.Fatalf("getblock %s: %v", hash, err)
	}
	var block struct {
		Tx []string `json:"tx"`
	}
	if err := json.Unmarshal([]byte(out), &block); err != nil || len(block.Tx) == 0 {
		l.t.Fatalf("getblock %s: %v %q", hash, err, out)
	}
	out, err = l.btcctl(ctx, "getrawtransaction", block.Tx[0], "1")
	if err != nil {
		l.t.Fatalf("getrawtransaction: %v", err)
	}
	var cb struct {
		Vout []struct {
			Value        float64 `json:"value"`
			ScriptPubKey struct {
				Hex string `json:"hex"`
			} `json:"scriptPubKey"`
		} `json:"vout"`
	}
	if err := json.Unmarshal([]byte(out), &cb); err != nil || len(cb.Vout) == 0 {
		l.t.Fatalf("coinbase %s: %v %q", block.Tx[0], err, out)
	}
	if cb.Vout[0].ScriptPubKey.Hex != hex.EncodeToString(l.minerScript) {
		l.t.Fatalf("the coinbase at height %d does not pay the miner key", h)
	}
	value := int64(math.Round(cb.Vout[0].Value * 1e8))
	to, err := btcutil.DecodeAddress(addr, &chaincfg.RegressionNetParams)
	if err != nil {
		l.t.Fatalf("address %q: %v", addr, err)
	}
	toScript, err := txscript.PayToAddrScript(to)
	if err != nil {
		l.t.Fatal(err)
	}
	prevHash, err := chainhash.NewHashFromStr(block.Tx[0])
	if err != nil {
		l.t.Fatal(err)
	}
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(prevHash, 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(value-fee, toScript))
	hashes := txscript.NewTxSigHashes(tx, txscript.NewCannedPrevOutputFetcher(l.minerScript, value))
	wit, err := txscript.WitnessSignature(tx, hashes, 0, value, l.minerScript, txscript.SigHashAll, l.minerKey, true)
	if err != nil {
		l.t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	var raw bytes.Buffer
	if err := tx.Serialize(&raw); err != nil {
		l.t.Fatal(err)
	}
	if _, err := l.btcctl(ctx, "sendrawtransaction", hex.EncodeToString(raw.Bytes())); err != nil {
		l.t.Fatalf("sendrawtransaction: %v", err)
	}
	return value - fee
}
