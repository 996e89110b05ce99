package regtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/co-infuse/co-infuse/lightning"
)

// NodeInfo is what a caller needs to reach one regtest LND with the
// lightning package.
type NodeInfo struct {
	Alias        string
	RPCHost      string // gRPC host:port on 127.0.0.1
	P2PHost      string // Lightning peer host:port on 127.0.0.1
	TLSCertPath  string
	MacaroonPath string // admin.macaroon
	Pubkey       string // identity key, hex
	Dir          string // lnddir
}

// LightningConfig returns a lightning.Config for this node.
func (n NodeInfo) LightningConfig(logger *slog.Logger) lightning.Config {
	return lightning.Config{
		Host:         n.RPCHost,
		TLSCertPath:  n.TLSCertPath,
		MacaroonPath: n.MacaroonPath,
		Logger:       logger,
	}
}

// lndNode is one regtest LND; fields are written during Start only.
type lndNode struct {
	info   NodeInfo
	d      *daemon
	client *lightning.Client
}

func startLnd(ctx context.Context, bin, dir, alias string, p2pPort, rpcPort int, b *btcdNode, logger *slog.Logger) (*lndNode, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s dir: %w", alias, err)
	}
	info := NodeInfo{
		Alias:        alias,
		RPCHost:      loopback(rpcPort),
		P2PHost:      loopback(p2pPort),
		TLSCertPath:  filepath.Join(dir, "tls.cert"),
		MacaroonPath: filepath.Join(dir, "data", "chain", "bitcoin", "regtest", "admin.macaroon"),
		Dir:          dir,
	}
	args := []string{
		"--lnddir=" + dir,
		"--alias=" + alias,
		"--noseedbackup",
		"--bitcoin.regtest",
		"--bitcoin.node=btcd",
		"--btcd.rpchost=" + loopback(b.rpcPort),
		"--btcd.rpcuser=" + b.user,
		"--btcd.rpcpass=" + b.pass,
		"--btcd.rpccert=" + b.certPath,
		"--listen=" + info.P2PHost,
		"--rpclisten=" + info.RPCHost,
		"--norest",
		"--nobootstrap",
		"--debuglevel=info",
		"--trickledelay=50",
		// Do not let lnd shut itself down over a nearly full disk in CI.
		"--healthcheck.diskspace.attempts=0",
	}
	d, err := startDaemon(alias, bin, filepath.Join(dir, "lnd-stdout.log"), args)
	if err != nil {
		return nil, err
	}
	n := &lndNode{info: info, d: d}
	if err := n.waitReady(ctx, logger); err != nil {
		_ = d.stop()
		return nil, err
	}
	n.info.Pubkey = n.client.Info().IdentityPubkey
	return n, nil
}

// waitReady polls lightning.Dial until lnd answers GetInfo. Missing cert or
// macaroon files, an unreachable port and "still starting" are expected
// while lnd boots.
func (n *lndNode) waitReady(ctx context.Context, logger *slog.Logger) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var lastErr error
	for {
		if n.d.exited() {
			return n.d.failure("exited during startup")
		}
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		c, err := lightning.Dial(dctx, n.info.LightningConfig(logger))
		cancel()
		if err == nil {
			n.client = c
			return nil
		}
		lastErr = err
		if !retryableStartupErr(err) {
			return n.d.failure("dial: %v", err)
		}
		select {
		case <-ctx.Done():
			return n.d.failure("not ready: %v (last error: %v)", ctx.Err(), lastErr)
		case <-t.C:
		}
	}
}

// retryableStartupErr reports whether err is one lnd gives while booting.
func retryableStartupErr(err error) bool {
	for _, e := range []error{
		lightning.ErrUnreachable, lightning.ErrNotReady, lightning.ErrWalletLocked,
		lightning.ErrTLSCert, lightning.ErrMacaroon, context.DeadlineExceeded,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// stop closes the client and stops the daemon; safe to call twice.
func (n *lndNode) stop() error {
	if n == nil {
		return nil
	}
	if n.client != nil {
		_ = n.client.Close()
	}
	return n.d.stop()
}
