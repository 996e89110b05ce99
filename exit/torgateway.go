package exit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// TorDialFunc opens a stream to host:port through a tor client (SOCKS5
// CONNECT by host name). When tor answers the CONNECT with a non-zero
// reply, the error must carry a *circuit.TorSocksError with tor's reply
// byte (node adapts its managed tor's errors); any other error means tor
// could not be asked at all (not running, SOCKS port closed).
//
// isolation names the co-infuse circuit the stream came on (derived from
// its session cookie, never the cookie itself): streams with different
// keys must not share a Tor circuit (tor's SOCKS isolation), so two
// clients that ask the gateway for the same .onion at once do not ride
// one rendezvous circuit.
type TorDialFunc func(ctx context.Context, host string, port uint16, isolation string) (net.Conn, error)

// Defaults of a TorGateway.
const (
	// DefaultGatewayDialTimeout bounds one dial through tor: an onion
	// service connection (descriptor fetch, introduction, rendezvous) takes
	// seconds and may take a minute on a slow Tor network.
	DefaultGatewayDialTimeout = 90 * time.Second
	// DefaultGatewayDialsPerCircuit caps the dials in progress for one
	// circuit, so one client cannot queue the gateway's tor full of
	// onion lookups.
	DefaultGatewayDialsPerCircuit = 8
	// DefaultGatewayDials caps the dials in progress for all circuits.
	// When they are all taken, a circuit holding at least two dials more
	// than the asking one gives up its oldest (fair sharing): one client
	// cannot hold them all with a few circuits.
	DefaultGatewayDials = 256
)

// errGatewayPreempted is the cause given to a dial's context when another
// circuit took its slot (fair sharing); Begin answers it ErrResourceLimit.
var errGatewayPreempted = errors.New("dial given up for another circuit's: this circuit held more dials than its share")

// ErrTorNotReady: the gateway's tor is not running or has not finished
// bootstrapping, so it cannot reach onion services now. It wraps
// circuit.ErrServiceNotOffered (END service-not-offered): the refusal is
// immediate and the client may try another gateway.
var ErrTorNotReady = fmt.Errorf("exit: tor gateway: tor is not ready: %w", circuit.ErrServiceNotOffered)

// TorGateway is the far end of a Tor-gateway circuit (BEGIN service
// tor-gateway, PROTOCOL.md §5): it takes well-formed v3 .onion targets
// only and opens them through the node's tor. tor's SOCKS refusals come
// back as *circuit.TorSocksError with tor's byte, which the circuit engine
// sends in END tor-socks. It logs no target. Safe for concurrent use.
type TorGateway struct {
	dial        TorDialFunc
	ready       func() error
	timeout     time.Duration
	perCircuit  int
	maxDials    int
	log         *slog.Logger
	mu          sync.Mutex
	total       int                                // guarded by mu: dials in progress, the sum of perCookie's lengths
	perCookie   map[[cell.CookieLen]byte][]*gwDial // guarded by mu: dials in progress per circuit, oldest first; no empty entries
	refusedOnce sync.Once
	// Counters for Stats, updated without mu.
	begins, dials, notReady, refused, preempted atomic.Uint64
}

// gwDial is one dial in progress, holding a slot until give or until
// another circuit preempts it.
type gwDial struct {
	cookie [cell.CookieLen]byte
	cancel context.CancelCauseFunc
	gone   bool // guarded by TorGateway.mu: preempted, its slot already given back
}

// GatewayStats counts what a TorGateway was asked since it was made (for
// status and tests). No counter names a target.
type GatewayStats struct {
	// Begins counts BEGINs for the tor-gateway service, well-formed or
	// not: every stream a client sent this gateway.
	Begins uint64 `json:"begins"`
	// Dials counts streams handed to tor (a SOCKS CONNECT started).
	Dials uint64 `json:"dials"`
	// NotReady counts streams refused because tor was not ready (END
	// service-not-offered): not running or not bootstrapped (refused at
	// once, no dial), or its SOCKS port gone when dialled (counted in
	// Dials too).
	NotReady uint64 `json:"not_ready"`
	// Refused counts streams refused before tor was asked for another
	// reason: a target that is not a well-formed v3 .onion, or a dial cap.
	Refused uint64 `json:"refused"`
	// Preempted counts dials given up (END resource-limit) because every
	// slot was taken and another circuit holding fewer dials asked.
	Preempted uint64 `json:"preempted"`
	// Pending is the dials in progress now.
	Pending int `json:"pending"`
}

// GatewayOption configures a TorGateway.
type GatewayOption func(*TorGateway) error

// WithGatewayReady sets the check run before every dial: a non-nil error
// (tor not running, bootstrap below 100%) refuses the stream at once with
// ErrTorNotReady instead of letting it wait on tor. Default: always ready.
func WithGatewayReady(f func() error) GatewayOption {
	return func(g *TorGateway) error {
		if f == nil {
			return errors.New("exit: nil ready func")
		}
		g.ready = f
		return nil
	}
}

// WithGatewayDialTimeout bounds one dial through tor (default
// DefaultGatewayDialTimeout); the circuit's own BEGIN deadline applies too.
func WithGatewayDialTimeout(d time.Duration) GatewayOption {
	return func(g *TorGateway) error {
		if d <= 0 {
			return fmt.Errorf("exit: gateway dial timeout %v is not positive", d)
		}
		g.timeout = d
		return nil
	}
}

// WithGatewayLimits caps the dials in progress per circuit and in all
// (defaults DefaultGatewayDialsPerCircuit, DefaultGatewayDials). A BEGIN
// beyond the per-circuit cap is answered END resource-limit; so is one
// beyond the total when no circuit holds two dials more than the asking
// one, else that circuit's oldest dial is given up (END resource-limit
// on its stream) and the slot goes to the BEGIN.
func WithGatewayLimits(perCircuit, total int) GatewayOption {
	return func(g *TorGateway) error {
		if perCircuit <= 0 || total <= 0 {
			return fmt.Errorf("exit: gateway limits %d/%d are not positive", perCircuit, total)
		}
		g.perCircuit, g.maxDials = perCircuit, total
		return nil
	}
}

// WithGatewayLogger sets the logger (default: discard); the gateway adds
// subsys=torgw and never logs a target.
func WithGatewayLogger(l *slog.Logger) GatewayOption {
	return func(g *TorGateway) error {
		if l == nil {
			return errors.New("exit: nil logger")
		}
		g.log = l
		return nil
	}
}

// NewTorGateway returns a gateway that dials through dial (required).
func NewTorGateway(dial TorDialFunc, opts ...GatewayOption) (*TorGateway, error) {
	if dial == nil {
		return nil, errors.New("exit: tor gateway needs a dial func")
	}
	g := &TorGateway{
		dial:       dial,
		ready:      func() error { return nil },
		timeout:    DefaultGatewayDialTimeout,
		perCircuit: DefaultGatewayDialsPerCircuit,
		maxDials:   DefaultGatewayDials,
		log:        slog.New(slog.DiscardHandler),
		perCookie:  make(map[[cell.CookieLen]byte][]*gwDial),
	}
	for _, o := range opts {
		if err := o(g); err != nil {
			return nil, err
		}
	}
	g.log = g.log.With("subsys", "torgw")
	return g, nil
}

// Begin is the circuit.BeginFunc of cell.ServiceTorGateway. Its errors
// wrap circuit sentinels: ErrServiceNotOffered for another service or a
// tor that is not ready (ErrTorNotReady), ErrExitPolicy for a target that
// is not a well-formed v3 .onion (onionaddr: length, base32, checksum,
// version), ErrResourceLimit beyond the dial caps, ErrTimeout, or a
// *circuit.TorSocksError with tor's reply byte.
func (g *TorGateway) Begin(ctx context.Context, req circuit.BeginRequest) (net.Conn, error) {
	if req.Service != cell.ServiceTorGateway {
		return nil, fmt.Errorf("tor gateway: %v: %w", req.Service, circuit.ErrServiceNotOffered)
	}
	g.begins.Add(1)
	host := req.Target.Host()
	if _, err := onionaddr.Parse(host); err != nil {
		// onionaddr's sentinels name the fault (checksum, version), never
		// the host.
		g.refused.Add(1)
		return nil, fmt.Errorf("tor gateway: %w: only v3 .onion targets: %w", circuit.ErrExitPolicy, err)
	}
	if err := g.ready(); err != nil {
		g.notReady.Add(1)
		g.refusedOnce.Do(func() { g.log.Info("tor gateway refuses streams until tor is ready", "err", err) })
		return nil, fmt.Errorf("%w: %v", ErrTorNotReady, err)
	}
	ctx, preempt := context.WithCancelCause(ctx)
	defer preempt(nil)
	d := &gwDial{cookie: req.Cookie, cancel: preempt}
	if !g.take(d) {
		g.refused.Add(1)
		return nil, fmt.Errorf("tor gateway: %w: too many dials in progress", circuit.ErrResourceLimit)
	}
	defer g.give(d)
	g.dials.Add(1)
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	conn, err := g.dial(ctx, host, req.Target.Port(), isolationKey(req.Cookie))
	if err == nil {
		return conn, nil
	}
	var ts *circuit.TorSocksError
	switch {
	case errors.As(err, &ts):
		g.log.Debug("tor refused a stream", "code", fmt.Sprintf("0x%02x", ts.Code))
		return nil, fmt.Errorf("tor gateway: %w", ts)
	case errors.Is(context.Cause(ctx), errGatewayPreempted):
		return nil, fmt.Errorf("tor gateway: %w: %w", circuit.ErrResourceLimit, errGatewayPreempted)
	case ctx.Err() != nil:
		return nil, fmt.Errorf("tor gateway: %w: %w", circuit.ErrTimeout, ctx.Err())
	}
	// tor could not be asked (its SOCKS port is gone: it died or
	// restarts). The error is from our own dial to loopback, without
	// the target.
	g.notReady.Add(1)
	g.log.Debug("tor gateway dial failed", "err", err)
	return nil, fmt.Errorf("%w: %v", ErrTorNotReady, err)
}

// take reserves a slot for d; false when a cap is reached. When every
// slot is taken, the circuit holding the most dials gives up its oldest
// to d if it holds at least two more than d's circuit (so shares never
// swing back and forth): max-min fair sharing of the slots among the
// circuits that ask. A client then needs one circuit per slot, not one
// per DefaultGatewayDialsPerCircuit slots, to hold them all.
func (g *TorGateway) take(d *gwDial) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	mine := len(g.perCookie[d.cookie])
	if mine >= g.perCircuit {
		return false
	}
	if g.total >= g.maxDials {
		var victim [cell.CookieLen]byte
		most := 0
		for c, ds := range g.perCookie {
			if len(ds) > most {
				victim, most = c, len(ds)
			}
		}
		if most < mine+2 {
			return false
		}
		ds := g.perCookie[victim]
		old := ds[0]
		clear(ds[:1])
		g.perCookie[victim] = ds[1:]
		old.gone = true
		g.total--
		old.cancel(errGatewayPreempted)
		g.preempted.Add(1)
	}
	g.total++
	g.perCookie[d.cookie] = append(g.perCookie[d.cookie], d)
	return true
}

// give returns the slot of d taken by take, unless it was preempted.
func (g *TorGateway) give(d *gwDial) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if d.gone {
		return
	}
	d.gone = true
	g.total--
	ds := g.perCookie[d.cookie]
	for i, x := range ds {
		if x == d {
			ds = append(ds[:i], ds[i+1:]...)
			break
		}
	}
	if len(ds) == 0 {
		delete(g.perCookie, d.cookie)
		return
	}
	g.perCookie[d.cookie] = ds
}

// Pending reports the dials in progress (for tests and status).
func (g *TorGateway) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

// Stats returns the gateway's counters. Safe for concurrent use.
func (g *TorGateway) Stats() GatewayStats {
	return GatewayStats{
		Begins:    g.begins.Load(),
		Dials:     g.dials.Load(),
		NotReady:  g.notReady.Load(),
		Refused:   g.refused.Load(),
		Preempted: g.preempted.Load(),
		Pending:   g.Pending(),
	}
}

// isolationKey is the tor stream-isolation key for the circuit of cookie:
// a hash, so the cookie (which names the session to this node's ledger)
// never reaches tor, and 32 hex digits, within SOCKS's 255 bytes.
func isolationKey(cookie [cell.CookieLen]byte) string {
	h := sha256.New()
	h.Write([]byte("co-infuse tor-gateway isolation"))
	h.Write(cookie[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}
