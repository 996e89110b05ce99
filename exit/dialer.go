package exit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

const (
	// DefaultDialTimeout bounds one Dial or Resolve, lookup included.
	DefaultDialTimeout = 20 * time.Second
	// maxAddrs caps how many resolved addresses are considered per target;
	// the resolver's answer is peer-influenced.
	maxAddrs = 16
	// minAttempt is the least time one address gets when the overall
	// timeout is shared between several addresses.
	minAttempt = 2 * time.Second
)

// Resolver looks up a host name. It returns addresses in the order they
// should be tried. The default uses net.DefaultResolver.LookupNetIP.
type Resolver func(ctx context.Context, host string) ([]netip.Addr, error)

// DialFunc opens a connection like (*net.Dialer).DialContext; network is
// always "tcp" and address an IP literal with port.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Dialer is the exit's connector: it resolves at the exit, applies the
// policy to every resolved address and dials the allowed ones in order. A
// Dialer holds no connections and needs no Close; it is safe for concurrent
// use.
type Dialer struct {
	policy  *Policy
	resolve Resolver
	dial    DialFunc
	timeout time.Duration
	log     *slog.Logger
}

// Option configures a Dialer.
type Option func(*Dialer) error

// WithResolver replaces the host-name lookup (default net.DefaultResolver).
func WithResolver(r Resolver) Option {
	return func(d *Dialer) error {
		if r == nil {
			return errors.New("exit: nil resolver")
		}
		d.resolve = r
		return nil
	}
}

// WithDialFunc replaces the TCP connect (default (&net.Dialer{}).DialContext).
func WithDialFunc(f DialFunc) Option {
	return func(d *Dialer) error {
		if f == nil {
			return errors.New("exit: nil dial func")
		}
		d.dial = f
		return nil
	}
}

// WithDialTimeout bounds one Dial or Resolve, lookup included (default
// DefaultDialTimeout). It must be positive.
func WithDialTimeout(t time.Duration) Option {
	return func(d *Dialer) error {
		if t <= 0 {
			return fmt.Errorf("exit: dial timeout %v must be positive", t)
		}
		d.timeout = t
		return nil
	}
}

// WithLogger sets the logger (default slog.Default()); the Dialer adds
// subsys=exit and logs outcomes at debug level, never destinations.
func WithLogger(l *slog.Logger) Option {
	return func(d *Dialer) error {
		if l == nil {
			return errors.New("exit: nil logger")
		}
		d.log = l
		return nil
	}
}

// New returns a Dialer enforcing policy, which must not be nil.
func New(policy *Policy, opts ...Option) (*Dialer, error) {
	if policy == nil {
		return nil, errors.New("exit: nil policy")
	}
	d := &Dialer{
		policy: policy,
		resolve: func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		},
		dial:    (&net.Dialer{}).DialContext,
		timeout: DefaultDialTimeout,
		log:     slog.Default(),
	}
	for _, o := range opts {
		if err := o(d); err != nil {
			return nil, err
		}
	}
	d.log = d.log.With("subsys", "exit")
	return d, nil
}

// Policy returns the policy the Dialer enforces.
func (d *Dialer) Policy() *Policy { return d.policy }

// Dial connects to target, which the front end parsed (cell.Target): an IP
// literal is dialed as it is, a name is resolved here. A .onion name is
// refused with circuit.ErrResolveFailed (no DNS answers it, and asking
// would leak it), the zero Target with circuit.ErrProtocol; both also wrap
// ErrBadTarget. If no resolved address passes the policy the error wraps
// circuit.ErrExitPolicy and nothing is dialed; otherwise the allowed
// addresses are tried in order within the dial timeout, each getting an
// equal share of what remains (at least 2s). Errors wrap one of
// circuit.ErrExitPolicy, ErrResolveFailed, ErrConnRefused, ErrUnreachable,
// ErrTimeout, ErrProtocol and the underlying cause; others are returned
// wrapped as they are. The caller owns and closes the returned conn.
func (d *Dialer) Dial(ctx context.Context, target cell.Target) (net.Conn, error) {
	switch {
	case target.IsZero():
		return nil, fmt.Errorf("dial: %w: %w: zero target", circuit.ErrProtocol, ErrBadTarget)
	case target.IsOnion():
		return nil, errOnion
	}
	port := target.Port()
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	literal, _ := target.Addr()
	addrs, err := d.lookup(ctx, literal, target.Host())
	if err != nil {
		return nil, err
	}
	allowed := addrs[:0:0]
	var refusal error
	for _, a := range addrs {
		if err := d.policy.Check(netip.AddrPortFrom(a, port)); err != nil {
			if refusal == nil {
				refusal = err
			}
			continue
		}
		allowed = append(allowed, a)
	}
	if len(allowed) == 0 {
		d.log.Debug("dial refused by policy", "err", refusal)
		return nil, fmt.Errorf("dial: %w", refusal)
	}
	var first error
	for i, a := range allowed {
		attempt, stop := context.WithTimeout(ctx, shareOf(ctx, len(allowed)-i))
		c, err := d.dial(attempt, "tcp", netip.AddrPortFrom(a, port).String())
		stop()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	err = classifyDial(withheld(first))
	d.log.Debug("dial failed", "addrs", len(allowed), "err", err)
	return nil, err
}

// errOnion refuses a .onion host: the exit service reaches the internet,
// not onion services, and a DNS lookup would leak the name.
var errOnion = fmt.Errorf("%w: %w: .onion is not reachable through an exit", circuit.ErrResolveFailed, ErrBadTarget)

// shareOf is the time one of n remaining attempts may take.
func shareOf(ctx context.Context, n int) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return DefaultDialTimeout
	}
	left := time.Until(dl)
	share := left / time.Duration(n)
	if share < minAttempt {
		share = min(minAttempt, left)
	}
	return share
}

// Resolve looks host up at the exit for a Tor-style RESOLVE. host comes
// from the wire and must follow the host grammar of cell.CheckHost; a host
// outside it, or a .onion name, is refused with circuit.ErrResolveFailed and
// ErrBadTarget. An IP literal is returned as it is. Among the addresses the
// policy allows on some port (Policy.AllowsAddr), the first IPv4 one is
// preferred, else the first IPv6 one. Errors wrap circuit.ErrResolveFailed,
// ErrExitPolicy (every address refused) or ErrTimeout, with the cause.
func (d *Dialer) Resolve(ctx context.Context, host string) (netip.Addr, error) {
	h, err := cell.CheckHost(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve: %w: %w: %w", circuit.ErrResolveFailed, ErrBadTarget, err)
	}
	if strings.HasSuffix(h, ".onion") { // as cell.Target.IsOnion
		return netip.Addr{}, errOnion
	}
	literal, _ := netip.ParseAddr(h) // canonical: a name never parses
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	addrs, err := d.lookup(ctx, literal, h)
	if err != nil {
		return netip.Addr{}, err
	}
	var v6 netip.Addr
	for _, a := range addrs {
		if !d.policy.AllowsAddr(a) {
			continue
		}
		if a.Is4() {
			return a, nil
		}
		if !v6.IsValid() {
			v6 = a
		}
	}
	if v6.IsValid() {
		return v6, nil
	}
	d.log.Debug("resolve refused by policy", "addrs", len(addrs))
	return netip.Addr{}, fmt.Errorf("resolve: %w", &PolicyError{Reason: "no resolved address is allowed"})
}

// lookup returns the unmapped addresses to consider, at most maxAddrs:
// literal if it is valid (an IP-literal host), else what name resolves to.
func (d *Dialer) lookup(ctx context.Context, literal netip.Addr, name string) ([]netip.Addr, error) {
	if literal.IsValid() {
		return []netip.Addr{literal.Unmap()}, nil
	}
	addrs, err := d.resolve(ctx, name)
	if err != nil {
		err = withheld(err)
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() == context.DeadlineExceeded {
			return nil, fmt.Errorf("resolve: %w: %w", circuit.ErrTimeout, err)
		}
		if errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("resolve: %w", err)
		}
		return nil, fmt.Errorf("resolve: %w: %w", circuit.ErrResolveFailed, err)
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("resolve: %w: no addresses", circuit.ErrResolveFailed)
	}
	if len(addrs) > maxAddrs {
		addrs = addrs[:maxAddrs]
	}
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.Unmap())
	}
	return out, nil
}

// classifyDial wraps a connect error with the circuit sentinel that
// describes it, keeping the cause.
func classifyDial(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("dial: %w: %w", circuit.ErrConnRefused, err)
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH),
		errors.Is(err, syscall.EHOSTDOWN), errors.Is(err, syscall.ENETDOWN):
		return fmt.Errorf("dial: %w: %w", circuit.ErrUnreachable, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.Is(err, syscall.ETIMEDOUT), errors.As(err, &ne) && ne.Timeout():
		return fmt.Errorf("dial: %w: %w", circuit.ErrTimeout, err)
	default:
		return fmt.Errorf("dial: %w", err)
	}
}

// withheld strips the destination from an error before it leaves the
// exit, since callers may log it: a *net.OpError is replaced by the error
// it wraps (the syscall error), a *net.DNSError by a copy without the name
// or server. Sentinels and errno values stay matchable with errors.Is.
func withheld(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return withheld(oe.Err)
	}
	var de *net.DNSError
	if errors.As(err, &de) {
		c := *de
		c.Name, c.Server = "(withheld)", ""
		return &c
	}
	return err
}
