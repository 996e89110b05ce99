package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/circuit/pool"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/proxy"
)

// gatewayBeginTimeout is the engine's BEGIN deadline on a node with the
// tor-gateway role: the gateway's own dial timeout plus a margin, since a
// Tor onion-service connection takes far longer than a TCP connect.
const gatewayBeginTimeout = exit.DefaultGatewayDialTimeout + 10*time.Second

// startTorGateway runs the tor-gateway role: BEGIN service tor-gateway is
// served by an exit.TorGateway that dials through the node's managed tor
// (n.tor). Until tor has bootstrapped, streams are refused at once.
func startTorGateway(n *Node, mux *circuit.Mux) (io.Closer, error) {
	if n.tor == nil {
		return nil, fieldErr("roles", "the %s role needs the tor section (a managed tor)", RoleTorGateway)
	}
	t := n.tor
	g, err := exit.NewTorGateway(torDial(t),
		exit.WithGatewayReady(func() error { return torReady(t.Status()) }),
		exit.WithGatewayLogger(n.log))
	if err != nil {
		return nil, err
	}
	n.torgw = g
	return nil, mux.Handle(cell.ServiceTorGateway, g.Begin)
}

// TorGatewayStats reports the tor-gateway role's counters (what clients
// asked of it), and false without the role.
func (n *Node) TorGatewayStats() (exit.GatewayStats, bool) {
	if n.torgw == nil {
		return exit.GatewayStats{}, false
	}
	return n.torgw.Stats(), true
}

// torDial adapts the managed tor's SOCKS dial to exit.TorDialFunc: tor's
// non-zero reply becomes a *circuit.TorSocksError with the same byte.
func torDial(t *torproc.Tor) exit.TorDialFunc {
	return func(ctx context.Context, host string, port uint16, isolation string) (net.Conn, error) {
		c, err := t.DialSocksIsolated(ctx, host, port, isolation)
		var se *torproc.SocksError
		if errors.As(err, &se) {
			return nil, &circuit.TorSocksError{Code: se.Code}
		}
		return c, err
	}
}

// torReady says why a managed tor cannot carry streams yet, or nil.
func torReady(s torproc.Status) error {
	switch {
	case !s.Running:
		return errors.New("tor is not running")
	case s.Bootstrap < 100:
		return fmt.Errorf("tor has bootstrapped %d%%", s.Bootstrap)
	}
	return nil
}

// errNoGateway: the client found no tor-gateway node to reach a .onion
// that has no co-infuse descriptor.
var errNoGateway = errors.New("node: no tor gateway")

// newGatewayPool returns the client's pool of gateway circuits: guard,
// middle and a last hop with the tor-gateway role, isolated by SOCKS
// credentials like the exit pool, never built ahead.
func (n *Node) newGatewayPool() (*pool.Pool, error) {
	return pool.New(pool.Config{
		Select:       n.selectGatewayPath,
		Build:        n.engine.Build,
		Report:       n.disc.Report,
		Prepare:      n.prepare,
		MaxIsolated:  n.cfg.Circuit.MaxIsolated,
		MaxDirtiness: n.cfg.Circuit.MaxDirtiness,
		IdleClose:    n.cfg.Circuit.IdleClose,
		Preemptive:   -1,
		BuildTimeout: n.cfg.Circuit.BuildTimeout,
		Logger:       n.log,
	})
}

// selectGatewayPath is the gateway pool's Select: a path whose last hop
// offers the tor-gateway role (any port: tor decides).
func (n *Node) selectGatewayPath(ctx context.Context, _ uint16, exclude []peer.ID) (pool.Path, error) {
	ads, err := n.disc.SelectPath(ctx, discovery.PathRequest{
		Hops:        n.cfg.Circuit.Hops,
		Final:       discovery.RoleTorGateway,
		MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
		Exclude:     exclude,
		Prefer:      n.holds,
	})
	if err != nil {
		return pool.Path{}, fmt.Errorf("%w: select path: %w", errNoGateway, err)
	}
	hops := make([]circuit.HopInfo, len(ads))
	for i, ad := range ads {
		hops[i] = circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
	}
	pp := paidPath{ads: ads, final: discovery.RoleTorGateway}
	if err := n.attachPrepay(hops, &pp, false); err != nil {
		return pool.Path{}, err
	}
	return pool.Path{Hops: hops, Meta: pp}, nil
}

// dialGateway opens target (a valid v3 .onion with no co-infuse
// descriptor) through a tor gateway: BEGIN service tor-gateway on a
// circuit of iso's gateway pool. tor's refusal comes back as a
// proxy.ReplyError with tor's byte; a circuit that dies before the
// gateway answers is replaced once, as in Dial.
func (n *Node) dialGateway(ctx context.Context, iso proxy.Isolation, target cell.Target) (net.Conn, error) {
	if n.gwPool == nil {
		return nil, fmt.Errorf("%w: %w", proxy.ErrOnionNotFound, errNoGateway)
	}
	ctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.StreamTimeout)
	defer cancel()
	var lastErr error
	for attempt := 0; attempt < 2; attempt++ {
		c, err := n.gwPool.Get(ctx, pool.Key(iso), target.Port())
		if err != nil {
			n.log.Debug("no tor gateway circuit", "err", err)
			return nil, gatewayError(err)
		}
		s, err := c.Dial(ctx, cell.ServiceTorGateway, target)
		if err == nil {
			n.gwPool.StreamOpened(c)
			return n.paidCircuit(c).Wrap(s), nil
		}
		lastErr = err
		if c.Err() == nil && !errors.Is(err, circuit.ErrClosed) && !errors.Is(err, circuit.ErrServiceNotOffered) {
			break // the gateway (or its tor) answered
		}
		if errors.Is(err, circuit.ErrServiceNotOffered) {
			// This gateway's tor is not ready: retire the circuit so
			// the retry selects a path again.
			c.Close()
		}
		n.log.Debug("tor gateway circuit failed before the stream opened; retrying", "circuit", c.ID(), "err", err)
	}
	return nil, gatewayError(lastErr)
}

// gatewayError maps a gateway failure to the SOCKS reply: tor's own byte
// when the gateway relayed one; descriptor not found (0xF0, HTTP 404)
// when no gateway is known, as nothing was asked of anyone; else a general
// failure (0x01) or TTL expired (0x06) for a timeout, never an onion code
// tor did not send.
func gatewayError(err error) error {
	var ts *circuit.TorSocksError
	switch {
	case errors.Is(err, errNoGateway):
		return fmt.Errorf("%w: %w", proxy.ErrOnionNotFound, err)
	case errors.As(err, &ts):
		return &proxy.ReplyError{Code: ts.Code, Err: err}
	case errors.Is(err, circuit.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return &proxy.ReplyError{Code: 0x06, Err: err}
	}
	return &proxy.ReplyError{Code: 0x01, Err: err}
}
