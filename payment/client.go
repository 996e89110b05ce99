package payment

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
)

// TopUpper sends a TOPUP to hop i (0-based, as in circuit.Circuit.Path) of
// a circuit and returns the TOPUP_ACK payload; a refusal is an error. It
// must return promptly once ctx is done. *circuit.Circuit implements it in
// production and a fake in this package's tests.
type TopUpper interface {
	TopUp(ctx context.Context, i int, payload []byte) ([]byte, error)
}

var _ TopUpper = (*circuit.Circuit)(nil)

// Hop is one paid hop of a circuit: one whose advert names a Lightning
// payee.
type Hop struct {
	// Index is the hop's position in the circuit, 0-based, as
	// TopUpper.TopUp takes it.
	Index int
	// Peer is the hop's node, whose vouchers pay it.
	Peer peer.ID
	// PriceSatPerMB is its price in sat per 10^6 bytes: the highest price
	// among the roles its advert names, as the hop's ledger prices it. 0
	// still pays 1 sat per TOPUP (SatsFor).
	PriceSatPerMB uint64
}

// Reservation is vouchers the wallet has set aside for one TOPUP.
type Reservation struct {
	// Payload is the redemption batch (VOUCHERS.md §2.1), the TOPUP payload.
	Payload []byte
	// Sats is the vouchers' value: at least what was asked, more when the
	// wallet's denominations cannot make it exactly. Zero means exactly
	// what was asked.
	Sats uint64
	// Commit marks the vouchers spent; it is called once the hop
	// acknowledged the TOPUP. Nil does nothing.
	Commit func() error
	// Release returns the vouchers to the wallet; it is called when the
	// hop did not acknowledge. Nil does nothing.
	Release func() error
}

// ClientConfig configures a Client. Reserve is required; zero fields take
// the default named in their comment.
type ClientConfig struct {
	// Reserve sets aside vouchers of node worth at least sats. An error
	// wrapping wallet.ErrInsufficient makes the client Buy and try once
	// more. It must not block on the network. Node wraps
	// wallet.ReserveBatch, MarkSpent and Release.
	Reserve func(node peer.ID, sats uint64) (Reservation, error)
	// Buy buys at least sats of node's vouchers over Lightning. It must
	// return promptly once ctx is done (Close waits for it). Nil never
	// buys: a short wallet fails the payment. Node wraps wallet.Buy.
	Buy func(ctx context.Context, node peer.ID, sats uint64) error
	// TargetBalanceSat is the least a purchase buys, in sats, so the
	// wallet does not buy per top-up: a short wallet buys
	// max(needed, TargetBalanceSat). 0 buys only what is needed.
	TargetBalanceSat uint64
	// TopUpTimeout bounds each background top-up (every paid hop of one
	// circuit, purchases included). Default 1m. A hop that never answers
	// holds a top-up this long at most.
	TopUpTimeout time.Duration
	// Logger receives the client's logs; nil discards them. The client
	// adds subsys=payment/client.
	Logger *slog.Logger
}

// Client pays the paid hops of a node's circuits (PROTOCOL.md §5.3) on the
// schedule in schedule.go. It owns every background top-up goroutine; Close
// stops and waits for them. Its methods are safe for concurrent use.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	// ctx is the parent of every top-up's context; cancel ends it in Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool // guarded by mu; set once by Close
	// wg counts top-up goroutines of every circuit. Add happens under mu
	// while closed is false, so it never races Close's Wait.
	wg sync.WaitGroup
}

// NewClient returns a Client, or an error wrapping ErrConfig that names the
// bad field.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Reserve == nil {
		return nil, fmt.Errorf("%w: ClientConfig.Reserve is required", ErrConfig)
	}
	if cfg.TopUpTimeout < 0 {
		return nil, fmt.Errorf("%w: ClientConfig.TopUpTimeout %v is negative", ErrConfig, cfg.TopUpTimeout)
	}
	if cfg.TopUpTimeout == 0 {
		cfg.TopUpTimeout = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg, log: cfg.Logger.With("subsys", "payment/client"), ctx: ctx, cancel: cancel}, nil
}

// Open prepays every hop in hops PrepayBytes at its price, in order,
// through c, and returns the circuit's ledger. hops lists only the paid
// hops; with none, Open pays nothing and returns a Circuit that never pays.
// ctx bounds the prepayment (purchases included), as does Close. On error
// nothing more is paid and the caller should close the circuit: hops paid
// before the failure keep what they were paid. The caller must Close the
// returned Circuit when its circuit ends.
func (cl *Client) Open(ctx context.Context, c TopUpper, hops []Hop) (*Circuit, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: Open: nil circuit", ErrConfig)
	}
	for _, h := range hops {
		if h.Index < 0 {
			return nil, fmt.Errorf("%w: Open: hop index %d", ErrConfig, h.Index)
		}
	}
	cl.mu.Lock()
	closed := cl.closed
	cl.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(cl.ctx, cancel)()

	pc := newCircuit(cl, c, hops)
	for i := range pc.hops {
		if err := pc.pay(ctx, i, PrepayBytes); err != nil {
			pc.Close()
			return nil, fmt.Errorf("prepay: %w", err)
		}
	}
	return pc, nil
}

// Close stops every background top-up (their TOPUPs fail and their
// vouchers are released) and waits for them to end. Later Opens fail with
// ErrClosed and later Counts do nothing. Safe to call more than once.
func (cl *Client) Close() {
	cl.mu.Lock()
	cl.closed = true
	cl.mu.Unlock()
	cl.cancel()
	cl.wg.Wait()
}
