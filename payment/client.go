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

// TopUpper is the circuit a Circuit pays for. *circuit.Circuit implements
// it in production and a fake in this package's tests.
type TopUpper interface {
	// TopUp sends a TOPUP to hop i (0-based, as in circuit.Circuit.Path)
	// and returns the TOPUP_ACK payload. A refusal (status 1) is an error
	// wrapping circuit.ErrPayment, returned with the payload (the hop's
	// Ack, or empty). It must return promptly once ctx is done.
	TopUp(ctx context.Context, i int, payload []byte) ([]byte, error)
	// HopCarried returns the bytes of RELAY cells hop i (0-based) has
	// carried for the circuit in both directions, counted as the hop
	// charges them (cell.Size per cell); 0 when there is no hop i. It
	// must be cheap, allocate nothing and not block: Check calls it on
	// every stream read and write.
	HopCarried(i int) uint64
	// Close tears the circuit down; the Circuit calls it when a hop
	// over-charges. It must not block on the Circuit.
	Close() error
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
	// PriceSatPerMB is its price in sat per 10^6 bytes for the role it
	// plays in this circuit, as the hop's ledger prices the session
	// (LedgerConfig): the relay price for a guard or middle, the final
	// role's price (exit, mempool, rendezvous) for the last hop. 0 still
	// pays 1 sat per TOPUP (SatsFor).
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
	// hop said it did not take them. Nil does nothing.
	Release func() error
	// Unsure is called instead of Release when the TOPUP got no answer (a
	// timeout, a closed circuit): the hop may have redeemed them. The
	// wallet must not offer them again before the hop's mint has said
	// they are unspent (wallet.Unsure, VOUCHERS.md §3.9). Nil calls
	// Release.
	Unsure func() error
}

// ClientConfig configures a Client. Reserve is required; zero fields take
// the default named in their comment.
type ClientConfig struct {
	// Reserve sets aside vouchers of node worth at least sats. An error
	// wrapping wallet.ErrInsufficient makes the client Buy and try once
	// more. It must not block on the network. Node wraps
	// wallet.ReserveBatch, MarkSpent and Release.
	Reserve func(node peer.ID, sats uint64) (Reservation, error)
	// ReserveTopUp is Reserve for top-ups after a circuit's prepay: it
	// may set aside less than sats (at least half; Reservation.Sats says
	// how much), keeping the wallet's smallest vouchers for prepays, which
	// they pay exactly (a top-up that pays less only brings the next one
	// sooner). Nil uses Reserve. Node wraps wallet.ReserveBulkBatch.
	ReserveTopUp func(node peer.ID, sats uint64) (Reservation, error)
	// Buy buys at least sats of node's vouchers over Lightning. It must
	// return promptly once ctx is done (Close waits for it). Nil never
	// buys: a short wallet fails the payment. Node wraps wallet.Buy.
	Buy func(ctx context.Context, node peer.ID, sats uint64) error
	// TargetBalanceSat is the least a purchase buys, in sats, so the
	// wallet does not buy per top-up: a short wallet buys
	// max(needed, TargetBalanceSat). 0 buys only what is needed.
	TargetBalanceSat uint64
	// TopUpTimeout bounds each background top-up of one hop, purchases
	// included. Default 1m. A hop that never answers holds a top-up this
	// long at most (and the circuit then closes: circuit.Circuit.TopUp).
	TopUpTimeout time.Duration
	// CheckInterval is how often the client checks every open Circuit
	// (Circuit.Check) besides on stream reads and writes, so cells no
	// stream sees (keep-alives, data nobody reads yet) are paid for too.
	// Default DefaultCheckInterval (1s). One goroutine does it for all
	// circuits, from the first Open to Close.
	CheckInterval time.Duration
	// MaxPaidCircuitsPerMinute caps how many circuits with a paid hop
	// Open prepays per minute (a token bucket of that size, refilled
	// evenly over a minute), so a local process opening connections with
	// fresh credentials (one circuit each) cannot turn the wallet into
	// prepayments faster than that; beyond it Open fails with
	// ErrRateLimited and pays nothing. Default
	// DefaultMaxPaidCircuitsPerMinute (60).
	MaxPaidCircuitsPerMinute int
	// Credited, if set, is told of every credit a hop's handshake answer
	// reports (Build), at once, whether or not the circuit is then built
	// and opened: a hop earns those sats even when a later hop fails the
	// build. HopStats.HandshakeSat repeats the figure for circuits opened
	// with OpenBuilt, so a caller that counts both subtracts it. It must
	// not block.
	Credited func(node peer.ID, sats uint64)
	// Now is the clock for retry delays and the circuit cap; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives the client's logs; nil discards them. The client
	// adds subsys=payment/client.
	Logger *slog.Logger
}

// Client pays the paid hops of a node's circuits (PROTOCOL.md §5.3) on the
// schedule in schedule.go. It owns every background top-up goroutine (at
// most one per paid hop of each open circuit) and one checker goroutine;
// Close stops and waits for them. Its methods are safe for concurrent use.
type Client struct {
	cfg ClientConfig
	log *slog.Logger

	// ctx is the parent of every top-up's context; cancel ends it in Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool // guarded by mu; set once by Close
	// circuits is guarded by mu: the open Circuits the checker visits,
	// added by Open after the prepay and removed by Circuit.Close.
	circuits map[*Circuit]struct{}
	// ticking is guarded by mu: the checker goroutine has been started.
	ticking bool
	// tokens and tokensAt are guarded by mu: the paid-circuit bucket.
	tokens   float64
	tokensAt time.Time
	// wg counts top-up goroutines of every circuit and the checker. Add
	// happens under mu while closed is false, so it never races Close's
	// Wait.
	wg sync.WaitGroup
}

// NewClient returns a Client, or an error wrapping ErrConfig that names the
// bad field.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Reserve == nil {
		return nil, fmt.Errorf("%w: ClientConfig.Reserve is required", ErrConfig)
	}
	if cfg.ReserveTopUp == nil {
		cfg.ReserveTopUp = cfg.Reserve
	}
	if cfg.TopUpTimeout < 0 {
		return nil, fmt.Errorf("%w: ClientConfig.TopUpTimeout %v is negative", ErrConfig, cfg.TopUpTimeout)
	}
	if cfg.CheckInterval < 0 {
		return nil, fmt.Errorf("%w: ClientConfig.CheckInterval %v is negative", ErrConfig, cfg.CheckInterval)
	}
	if cfg.MaxPaidCircuitsPerMinute < 0 {
		return nil, fmt.Errorf("%w: ClientConfig.MaxPaidCircuitsPerMinute %d is negative", ErrConfig, cfg.MaxPaidCircuitsPerMinute)
	}
	if cfg.MaxPaidCircuitsPerMinute == 0 {
		cfg.MaxPaidCircuitsPerMinute = DefaultMaxPaidCircuitsPerMinute
	}
	if cfg.TopUpTimeout == 0 {
		cfg.TopUpTimeout = time.Minute
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultCheckInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Client{cfg: cfg, log: cfg.Logger.With("subsys", "payment/client"), ctx: ctx, cancel: cancel,
		circuits: make(map[*Circuit]struct{}), tokens: float64(cfg.MaxPaidCircuitsPerMinute), tokensAt: cfg.Now()}, nil
}

// Open prepays every hop in hops, in order, through c, at its price:
// PrepayBytes plus the cells it carried for the build (schedule.go), and
// returns the circuit's ledger, which the client then checks every
// CheckInterval. hops lists only the paid
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
	limited := len(hops) > 0 && !cl.takeTokenLocked()
	cl.mu.Unlock()
	if closed {
		return nil, ErrClosed
	}
	if limited {
		cl.log.Warn("new paid circuit refused: over the cap of paid circuits per minute", "cap", cl.cfg.MaxPaidCircuitsPerMinute)
		return nil, ErrRateLimited
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(cl.ctx, cancel)()

	pc := newCircuit(cl, c, hops)
	if g, ok := c.(growthGater); ok && len(pc.hops) > 0 {
		g.SetGrowthGate(pc.allowsWindow)
	}
	for i := range pc.hops {
		if err := pc.pay(ctx, i, refillBytes(0, c.HopCarried(pc.hops[i].Index), 0, PrepayBytes), cl.cfg.Reserve); err != nil {
			pc.Close()
			return nil, fmt.Errorf("prepay: %w", err)
		}
	}
	pc.mu.Lock()
	for i := range pc.hops {
		pc.hops[i].atOpen = c.HopCarried(pc.hops[i].Index) // the prepay's TOPUPs count as the build
	}
	pc.mu.Unlock()
	if len(pc.hops) > 0 && !cl.track(pc) {
		pc.Close()
		return nil, ErrClosed
	}
	return pc, nil
}

// takeTokenLocked takes one paid circuit from the bucket; false if empty.
func (cl *Client) takeTokenLocked() bool {
	now := cl.cfg.Now()
	size := float64(cl.cfg.MaxPaidCircuitsPerMinute)
	if el := now.Sub(cl.tokensAt); el > 0 {
		cl.tokens = min(size, cl.tokens+size*el.Minutes())
	}
	cl.tokensAt = now
	if cl.tokens < 1 {
		return false
	}
	cl.tokens--
	return true
}

// track adds pc to the circuits the checker visits, starting the checker
// if it is not running; false once the client is closed.
func (cl *Client) track(pc *Circuit) bool {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.closed {
		return false
	}
	cl.circuits[pc] = struct{}{}
	if !cl.ticking {
		cl.ticking = true
		cl.wg.Add(1)
		go func() {
			defer cl.wg.Done()
			cl.checkLoop()
		}()
	}
	return true
}

// forget removes pc from the checker's circuits.
func (cl *Client) forget(pc *Circuit) {
	cl.mu.Lock()
	delete(cl.circuits, pc)
	cl.mu.Unlock()
}

// checkLoop checks every open circuit every CheckInterval until Close.
func (cl *Client) checkLoop() {
	t := time.NewTicker(cl.cfg.CheckInterval)
	defer t.Stop()
	var pcs []*Circuit
	for {
		select {
		case <-cl.ctx.Done():
			return
		case <-t.C:
		}
		cl.mu.Lock()
		pcs = pcs[:0]
		for pc := range cl.circuits {
			pcs = append(pcs, pc)
		}
		cl.mu.Unlock()
		for _, pc := range pcs {
			pc.Check()
		}
		clear(pcs)
	}
}

// Close stops every background top-up (their TOPUPs fail and their
// vouchers are released) and the checker, and waits for them to end. Later
// Opens fail with ErrClosed and later Checks start nothing. Safe to call
// more than once.
func (cl *Client) Close() {
	cl.mu.Lock()
	cl.closed = true
	cl.mu.Unlock()
	cl.cancel()
	cl.wg.Wait()
}
