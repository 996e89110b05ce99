package regtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// btcdNode is the regtest btcd. Its fields are fixed before start; rpc is
// cleared by stop. Network.mu serializes use after Start.
type btcdNode struct {
	bin      string
	dir      string
	p2pPort  int
	rpcPort  int
	user     string
	pass     string
	certPath string
	logPath  string

	// minerKey owns every coinbase; the harness spends coinbases to fund
	// LND wallets (btcd has no wallet and no generatetoaddress).
	minerKey  *btcec.PrivateKey
	minerAddr btcutil.Address

	d   *daemon
	rpc *rpcclient.Client
}

func newBtcdNode(bin, dir string, p2pPort, rpcPort int) (*btcdNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("btcd dir: %w", err)
	}
	pass := make([]byte, 16)
	if _, err := rand.Read(pass); err != nil {
		return nil, err
	}
	key, err := btcec.NewPrivateKey()
	if err != nil {
		return nil, err
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(
		btcutil.Hash160(key.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		return nil, err
	}
	return &btcdNode{
		minerKey:  key,
		minerAddr: addr,
		bin:       bin,
		dir:       dir,
		p2pPort:   p2pPort,
		rpcPort:   rpcPort,
		user:      "coinfuse",
		pass:      hex.EncodeToString(pass),
		certPath:  filepath.Join(dir, "rpc.cert"),
		logPath:   filepath.Join(dir, "btcd.log"),
	}, nil
}

// start launches btcd, mining to the miner key, and waits for its RPC port.
// btcd wipes its regtest chain at every start, so it is started only once.
func (b *btcdNode) start(ctx context.Context) error {
	args := []string{
		"--regtest",
		"--datadir=" + filepath.Join(b.dir, "data"),
		"--logdir=" + filepath.Join(b.dir, "logs"),
		"--rpccert=" + b.certPath,
		"--rpckey=" + filepath.Join(b.dir, "rpc.key"),
		"--listen=" + loopback(b.p2pPort),
		"--rpclisten=" + loopback(b.rpcPort),
		"--rpcuser=" + b.user,
		"--rpcpass=" + b.pass,
		"--txindex",
		"--nobanning",
		"--miningaddr=" + b.minerAddr.EncodeAddress(),
		"--debuglevel=info",
	}
	d, err := startDaemon("btcd", b.bin, b.logPath, args)
	if err != nil {
		return err
	}
	b.d = d
	return b.waitRPC(ctx)
}

// waitRPC polls getblockcount until btcd answers.
func (b *btcdNode) waitRPC(ctx context.Context) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var lastErr error
	for {
		if b.d.exited() {
			return b.d.failure("exited during startup")
		}
		if b.rpc == nil {
			if cert, err := os.ReadFile(b.certPath); err == nil {
				c, err := rpcclient.New(&rpcclient.ConnConfig{
					Host:         loopback(b.rpcPort),
					User:         b.user,
					Pass:         b.pass,
					HTTPPostMode: true,
					Certificates: cert,
				}, nil)
				if err != nil {
					return fmt.Errorf("btcd rpc client: %w", err)
				}
				b.rpc = c
			}
		}
		if b.rpc != nil {
			if _, err := b.rpc.GetBlockCount(); err == nil {
				return nil
			} else {
				lastErr = err
			}
		}
		select {
		case <-ctx.Done():
			return b.d.failure("RPC not ready: %v (last error: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// stop stops btcd and its RPC client; safe when never started.
func (b *btcdNode) stop() error {
	if b.rpc != nil {
		b.rpc.Shutdown()
		b.rpc.WaitForShutdown()
		b.rpc = nil
	}
	if b.d == nil {
		return nil
	}
	return b.d.stop()
}

// generate mines n blocks in batches and returns the new height.
func (b *btcdNode) generate(ctx context.Context, n int) (int64, error) {
	const batch = 50
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		k := min(n, batch)
		if _, err := b.rpc.Generate(uint32(k)); err != nil {
			return 0, b.d.failure("generate %d blocks: %v", k, err)
		}
		n -= k
	}
	h, err := b.rpc.GetBlockCount()
	if err != nil {
		return 0, b.d.failure("getblockcount: %v", err)
	}
	return h, nil
}

// fundFee is the fee of a funding transaction (one P2WKH input and output,
// about 110 vbytes), well above btcd's minimum relay fee.
const fundFee = 10_000

// fund sends the coinbase output of the block at height, minus fundFee, to
// addr and returns the amount sent. The coinbase must be mature and unspent;
// the caller mines to confirm it.
func (b *btcdNode) fund(height int64, addr string) (int64, error) {
	_, amount, err := b.fundTx(height, addr)
	return amount, err
}

// fundTx is fund, also returning the funding transaction's id.
func (b *btcdNode) fundTx(height int64, addr string) (string, int64, error) {
	to, err := btcutil.DecodeAddress(addr, &chaincfg.RegressionNetParams)
	if err != nil {
		return "", 0, fmt.Errorf("fund: address %q: %w", addr, err)
	}
	toScript, err := txscript.PayToAddrScript(to)
	if err != nil {
		return "", 0, fmt.Errorf("fund: %w", err)
	}
	hash, err := b.rpc.GetBlockHash(height)
	if err != nil {
		return "", 0, b.d.failure("getblockhash %d: %v", height, err)
	}
	block, err := b.rpc.GetBlock(hash)
	if err != nil {
		return "", 0, b.d.failure("getblock %d: %v", height, err)
	}
	cb := block.Transactions[0]
	prev := cb.TxOut[0]
	minerScript, err := txscript.PayToAddrScript(b.minerAddr)
	if err != nil {
		return "", 0, fmt.Errorf("fund: %w", err)
	}
	if !bytes.Equal(prev.PkScript, minerScript) {
		return "", 0, fmt.Errorf("fund: coinbase at height %d does not pay the miner key", height)
	}
	amount := prev.Value - fundFee
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(ptr(cb.TxHash()), 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(amount, toScript))
	hashes := txscript.NewTxSigHashes(tx, txscript.NewCannedPrevOutputFetcher(prev.PkScript, prev.Value))
	wit, err := txscript.WitnessSignature(tx, hashes, 0, prev.Value, prev.PkScript,
		txscript.SigHashAll, b.minerKey, true)
	if err != nil {
		return "", 0, fmt.Errorf("fund: sign: %w", err)
	}
	tx.TxIn[0].Witness = wit
	if _, err := b.rpc.SendRawTransaction(tx, false); err != nil {
		return "", 0, b.d.failure("sendrawtransaction: %v", err)
	}
	return tx.TxHash().String(), amount, nil
}

func ptr[T any](v T) *T { return &v }
