package regtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/internal/loopport"
)

// Defaults for Options.
const (
	// DefaultChannelSat is the capacity of the Alice→Bob channel.
	DefaultChannelSat = 1_000_000

	// segwitBlocks is enough regtest blocks for segwit to be active on
	// btcd (three 144-block windows) and for coinbases to mature.
	segwitBlocks = 500

	// confirmBlocks are mined on top of the funding transaction.
	confirmBlocks = 6
)

// Options configure Start.
type Options struct {
	// Dir holds daemon data and logs. Empty means a new temporary
	// directory, removed by Close.
	Dir string
	// CacheDir is passed to EnsureBinaries; empty means DefaultCacheDir.
	CacheDir string
	// Progress receives human-readable progress lines; nil discards them.
	Progress io.Writer
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// ChannelSat is the Alice→Bob channel capacity in satoshis; default
	// DefaultChannelSat.
	ChannelSat int64
	// ChainOnly starts btcd alone (mined past segwit activation and
	// coinbase maturity), without the LND nodes: for mempool delivery
	// without Lightning. Alice and Bob must not be called then.
	ChainOnly bool
}

// Network is a running btcd with two LND nodes and an active channel from
// Alice to Bob. Create it with Start; Close stops everything.
type Network struct {
	dir       string
	removeDir bool
	progress  io.Writer
	log       *slog.Logger

	mu    sync.Mutex // serializes Mine, restarts and Close; guards btcd
	btcd  *btcdNode
	alice *lndNode // set during Start, then read-only
	bob   *lndNode // set during Start, then read-only
	// nextCoinbase is the height of the next coinbase Fund spends;
	// guarded by mu.
	nextCoinbase int64

	closeOnce sync.Once
	closeErr  error
}

// Start builds the daemons if needed (EnsureBinaries), starts btcd on
// regtest and two LND nodes on free 127.0.0.1 ports, funds Alice, opens a
// channel from Alice to Bob and returns once both see it active. On error
// everything already started is stopped. ctx bounds the whole startup.
func Start(ctx context.Context, opts Options) (_ *Network, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ChannelSat == 0 {
		opts.ChannelSat = DefaultChannelSat
	}
	ensure := EnsureBinaries
	if opts.ChainOnly {
		ensure = EnsureBtcd
	}
	bins, err := ensure(ctx, opts.CacheDir, opts.Progress)
	if err != nil {
		return nil, err
	}
	n := &Network{progress: opts.Progress, log: opts.Logger.With("subsys", "regtest")}
	if opts.Dir == "" {
		d, err := os.MkdirTemp("", "co-infuse-regtest-")
		if err != nil {
			return nil, fmt.Errorf("regtest dir: %w", err)
		}
		n.dir, n.removeDir = d, true
	} else {
		d, err := filepath.Abs(opts.Dir)
		if err != nil {
			return nil, fmt.Errorf("regtest dir: %w", err)
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("regtest dir: %w", err)
		}
		n.dir = d
	}
	defer func() {
		if err != nil {
			_ = n.Close()
		}
	}()
	begin := time.Now()

	ports, err := loopport.Pick(6)
	if err != nil {
		return nil, err
	}
	n.btcd, err = newBtcdNode(bins.Btcd, filepath.Join(n.dir, "btcd"), ports[0], ports[1])
	if err != nil {
		return nil, err
	}
	n.say("starting btcd (regtest) in %s", n.dir)
	if err := n.btcd.start(ctx); err != nil {
		return nil, err
	}
	// Mine before lnd starts: lnd waits for a current chain tip, segwit
	// needs three 144-block windows on regtest, coinbases need 100 more.
	n.say("mining %d blocks (segwit activation, coinbase maturity)", segwitBlocks)
	if _, err := n.btcd.generate(ctx, segwitBlocks); err != nil {
		return nil, err
	}
	n.nextCoinbase = 1
	if opts.ChainOnly {
		n.say("regtest chain ready in %v", time.Since(begin).Round(time.Second))
		return n, nil
	}
	n.nextCoinbase = 2 // 1 funds Alice

	n.say("starting lnd Alice and Bob")
	type started struct {
		node *lndNode
		err  error
	}
	results := make(chan started, 2) // one per starter goroutine
	var wg sync.WaitGroup
	for i, alias := range []string{"Alice", "Bob"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nd, err := startLnd(ctx, bins.Lnd, filepath.Join(n.dir, alias), alias,
				ports[2+2*i], ports[3+2*i], n.btcd, opts.Logger)
			results <- started{nd, err}
		}()
	}
	wg.Wait()
	close(results)
	var errs []error
	for r := range results {
		if r.err != nil {
			errs = append(errs, r.err)
			continue
		}
		if r.node.info.Alias == "Alice" {
			n.alice = r.node
		} else {
			n.bob = r.node
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	addr, err := n.alice.client.NewAddress(ctx)
	if err != nil {
		return nil, n.alice.d.failure("new address: %v", err)
	}
	sent, err := n.btcd.fund(1, addr)
	if err != nil {
		return nil, err
	}
	n.say("sent %d sat to Alice", sent)
	if _, err := n.mineLocked(ctx, 1); err != nil {
		return nil, err
	}
	n.say("waiting for Alice's wallet balance")
	if err := poll(ctx, func() (bool, error) {
		bal, err := n.alice.client.WalletBalance(ctx)
		return bal >= sent, err
	}); err != nil {
		return nil, n.alice.d.failure("wallet not funded: %v", err)
	}

	n.say("opening a %d sat channel Alice → Bob", opts.ChannelSat)
	if err := n.alice.client.ConnectPeer(ctx, n.bob.info.Pubkey, n.bob.info.P2PHost); err != nil {
		return nil, n.alice.d.failure("connect to Bob: %v", err)
	}
	var lastOpenErr error
	if err := poll(ctx, func() (bool, error) {
		_, err := n.alice.client.OpenChannel(ctx, n.bob.info.Pubkey, opts.ChannelSat)
		if err != nil {
			// Bob may not have finished the peer handshake or syncing.
			lastOpenErr = err
			return false, nil
		}
		return true, nil
	}); err != nil {
		return nil, n.alice.d.failure("open channel: %v (last error: %v)", err, lastOpenErr)
	}
	if _, err := n.mineLocked(ctx, confirmBlocks); err != nil {
		return nil, err
	}
	n.say("waiting for the channel to be active on both sides")
	for _, side := range []*lndNode{n.alice, n.bob} {
		if err := poll(ctx, func() (bool, error) {
			chans, err := side.client.Channels(ctx)
			if err != nil {
				return false, err
			}
			for _, ch := range chans {
				if ch.Active {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return nil, side.d.failure("channel not active: %v", err)
		}
	}
	// An active link is not yet routable: Alice's path finding only counts
	// the channel once it is in her graph. Wait until a route exists.
	var lastRouteErr error
	if err := poll(ctx, func() (bool, error) {
		_, err := n.alice.client.QueryRoute(ctx, n.bob.info.Pubkey, opts.ChannelSat/10)
		lastRouteErr = err
		return err == nil, nil
	}); err != nil {
		return nil, n.alice.d.failure("no route to Bob: %v (last error: %v)", err, lastRouteErr)
	}
	n.say("regtest network ready in %v", time.Since(begin).Round(time.Second))
	return n, nil
}

// Alice returns the client-side (paying) node.
func (n *Network) Alice() NodeInfo { return n.alice.info }

// Bob returns the node-side (paid) node.
func (n *Network) Bob() NodeInfo { return n.bob.info }

// Dir is the directory holding daemon data and logs.
func (n *Network) Dir() string { return n.dir }

// BtcdRPC returns btcd's RPC address, credentials and TLS certificate path.
func (n *Network) BtcdRPC() (host, user, pass, certPath string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return loopback(n.btcd.rpcPort), n.btcd.user, n.btcd.pass, n.btcd.certPath
}

// Fund sends a mature coinbase of the harness's miner, less a fee, to
// addr (a regtest address), mines one block to confirm it and returns the
// funding transaction's id and the amount at output 0. Tests use it to
// give a key of their own a coin to spend. Each call spends a new
// coinbase; a few hundred are available.
func (n *Network) Fund(ctx context.Context, addr string) (txid string, amount int64, err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.btcd == nil || n.btcd.rpc == nil {
		return "", 0, errors.New("regtest: network closed")
	}
	tip, err := n.btcd.rpc.GetBlockCount()
	if err != nil {
		return "", 0, n.btcd.d.failure("getblockcount: %v", err)
	}
	if n.nextCoinbase > tip-100 {
		return "", 0, errors.New("regtest: no mature coinbase left to fund with")
	}
	h := n.nextCoinbase
	n.nextCoinbase++
	id, amount, err := n.btcd.fundTx(h, addr)
	if err != nil {
		return "", 0, err
	}
	if _, err := n.mineLocked(ctx, 1); err != nil {
		return "", 0, err
	}
	return id, amount, nil
}

// Mine mines n blocks (their coinbases pay a harness key, not the nodes)
// and waits until both LND nodes have seen the new tip.
func (n *Network) Mine(ctx context.Context, blocks int) error {
	if blocks <= 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	_, err := n.mineLocked(ctx, blocks)
	return err
}

// mineLocked mines and waits for both nodes to reach the new height. The
// caller holds n.mu or is Start.
func (n *Network) mineLocked(ctx context.Context, blocks int) (int64, error) {
	if n.btcd == nil || n.btcd.rpc == nil {
		return 0, errors.New("regtest: network closed")
	}
	h, err := n.btcd.generate(ctx, blocks)
	if err != nil {
		return 0, err
	}
	for _, side := range []*lndNode{n.alice, n.bob} {
		if side == nil {
			continue
		}
		if err := poll(ctx, func() (bool, error) {
			info, err := side.client.GetInfo(ctx)
			if err != nil {
				return false, err
			}
			return info.SyncedToChain && int64(info.BlockHeight) >= h, nil
		}); err != nil {
			return 0, side.d.failure("not synced to height %d: %v", h, err)
		}
	}
	return h, nil
}

// Close stops both LND nodes and btcd (SIGTERM, then SIGKILL after a grace
// period) and waits for them. It removes Dir only if Start created it. Safe
// to call more than once.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		var errs []error
		errc := make(chan error, 2) // one per lnd
		for _, side := range []*lndNode{n.alice, n.bob} {
			if side == nil { // ChainOnly, or Start failed early
				errc <- nil
				continue
			}
			go func() { errc <- side.stop() }()
		}
		for range 2 {
			errs = append(errs, <-errc)
		}
		if n.btcd != nil {
			errs = append(errs, n.btcd.stop())
		}
		if n.removeDir {
			errs = append(errs, os.RemoveAll(n.dir))
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// say writes one progress line.
func (n *Network) say(format string, args ...any) {
	fmt.Fprintf(n.progress, format+"\n", args...)
}

// poll calls f every 200ms until it reports done, returns an error, or ctx
// ends.
func poll(ctx context.Context, f func() (bool, error)) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		done, err := f()
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
