package regtest

import (
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
)

// btcdNode is the regtest btcd. Its fields are fixed at Start except d and
// rpc, which restart replaces; Network.mu guards them.
type btcdNode struct {
	bin      string
	dir      string
	p2pPort  int
	rpcPort  int
	user     string
	pass     string
	certPath string
	logPath  string

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
	return &btcdNode{
		bin:      bin,
		dir:      dir,
		p2pPort:  p2pPort,
		rpcPort:  rpcPort,
		user:     "coinfuse",
		pass:     hex.EncodeToString(pass),
		certPath: filepath.Join(dir, "rpc.cert"),
		logPath:  filepath.Join(dir, "btcd.log"),
	}, nil
}

// start launches btcd mining to miningAddr and waits for its RPC port.
func (b *btcdNode) start(ctx context.Context, miningAddr string) error {
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
		"--miningaddr=" + miningAddr,
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

// throwawayAddress is a fresh regtest P2WKH address whose key is discarded:
// the first block goes there only to make btcd consider itself current.
func throwawayAddress() (string, error) {
	k, err := btcec.NewPrivateKey()
	if err != nil {
		return "", err
	}
	a, err := btcutil.NewAddressWitnessPubKeyHash(
		btcutil.Hash160(k.PubKey().SerializeCompressed()), &chaincfg.RegressionNetParams)
	if err != nil {
		return "", err
	}
	return a.EncodeAddress(), nil
}
