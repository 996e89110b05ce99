package lightning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lightningnetwork/lnd/lnrpc"
	"github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Info is what LND's GetInfo says about the node.
type Info struct {
	// IdentityPubkey is the node's public key, 66 lowercase hex digits.
	IdentityPubkey string
	// Alias is the node's self-chosen name.
	Alias string
	// Chains lists "chain/network" pairs, e.g. "bitcoin/mainnet".
	Chains []string
	// SyncedToChain reports whether LND's wallet is at the chain tip.
	SyncedToChain bool
	// SyncedToGraph reports whether LND finished its initial graph sync.
	SyncedToGraph bool
	// BlockHeight is LND's view of the best block height.
	BlockHeight uint32
	// NumActiveChannels counts channels that can route now.
	NumActiveChannels uint32
	// Version is LND's version string.
	Version string
}

// Client talks to one LND node. It is safe for concurrent use. Create it
// with Dial and release it with Close.
type Client struct {
	cfg    Config // immutable after Dial
	log    *slog.Logger
	conn   *grpc.ClientConn
	ln     lnrpc.LightningClient
	router routerrpc.RouterClient

	infoMu sync.Mutex
	info   Info // guarded by infoMu; refreshed by GetInfo

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error // written once inside closeOnce
}

// Dial checks cfg, loads the TLS certificate and macaroon, connects to LND and
// calls GetInfo, so that a Client it returns is known to work. Failures wrap
// ErrInvalidConfig, ErrTLSCert, ErrMacaroon, ErrUnreachable, ErrWalletLocked,
// ErrNotReady or ErrPermissionDenied with advice for the user. If ctx has no
// deadline, GetInfo is bounded by cfg.RPCTimeout.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	pool, err := loadCertPool(cfg.TLSCertPath)
	if err != nil {
		return nil, err
	}
	mac, err := loadMacaroon(cfg.MacaroonPath)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(cfg.Host,
		grpc.WithTransportCredentials(credentials.NewClientTLSFromCert(pool, "")),
		grpc.WithPerRPCCredentials(mac),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: lnd.host %q: %v", ErrInvalidConfig, cfg.Host, err)
	}
	c := &Client{
		cfg:    cfg,
		log:    cfg.Logger.With("subsys", "lightning"),
		conn:   conn,
		ln:     lnrpc.NewLightningClient(conn),
		router: routerrpc.NewRouterClient(conn),
	}
	info, err := c.GetInfo(ctx)
	if err != nil {
		_ = conn.Close()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w: no answer from LND at %s within %v; is lnd running and does lnd.host match its rpclisten address? (%v)",
				ErrUnreachable, cfg.Host, cfg.RPCTimeout, err)
		}
		return nil, err
	}
	c.log.Info("connected to lnd", "alias", info.Alias, "chains", info.Chains,
		"synced_to_chain", info.SyncedToChain, "version", info.Version)
	return c, nil
}

// Close closes the connection. It is safe to call more than once; later
// calls return the first call's result. Methods called after Close return
// ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.closeErr = c.conn.Close()
	})
	return c.closeErr
}

// Info returns what GetInfo said at Dial time or at the last GetInfo call.
func (c *Client) Info() Info {
	c.infoMu.Lock()
	defer c.infoMu.Unlock()
	info := c.info
	info.Chains = append([]string(nil), c.info.Chains...)
	return info
}

// GetInfo asks LND for fresh node information and remembers it for Info.
func (c *Client) GetInfo(ctx context.Context) (Info, error) {
	ctx, cancel, err := c.rpcContext(ctx)
	if err != nil {
		return Info{}, err
	}
	defer cancel()
	resp, err := c.ln.GetInfo(ctx, &lnrpc.GetInfoRequest{})
	if err != nil {
		return Info{}, classify(rpcGetInfo, c.cfg, err)
	}
	info := Info{
		IdentityPubkey:    resp.IdentityPubkey,
		Alias:             resp.Alias,
		SyncedToChain:     resp.SyncedToChain,
		SyncedToGraph:     resp.SyncedToGraph,
		BlockHeight:       resp.BlockHeight,
		NumActiveChannels: resp.NumActiveChannels,
		Version:           resp.Version,
	}
	for _, ch := range resp.Chains {
		info.Chains = append(info.Chains, ch.Chain+"/"+ch.Network)
	}
	c.infoMu.Lock()
	c.info = info
	c.infoMu.Unlock()
	return info, nil
}

// rpcContext checks the client is open and bounds ctx by cfg.RPCTimeout
// when it has no earlier deadline.
func (c *Client) rpcContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if c.closed.Load() {
		return nil, nil, ErrClosed
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= c.cfg.RPCTimeout {
		return ctx, func() {}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RPCTimeout)
	return ctx, cancel, nil
}
