package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Defaults for the zero fields of Config.
const (
	// DefaultHandshakeTimeout bounds a client's greeting, authentication
	// and request (SOCKS) or request head (HTTP).
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultConnectTimeout bounds one Dial or Resolve, as Tor's
	// SocksTimeout does.
	DefaultConnectTimeout = 2 * time.Minute
	// DefaultMaxConns caps concurrent client connections per server.
	DefaultMaxConns = 512
)

// Isolation is the client's credential pair; streams with different pairs
// must not share a circuit. The zero value means the client sent none.
// Username and Password are opaque bytes (bitcoind and lnd send random
// hex); never log them.
type Isolation struct{ Username, Password string }

// Config is what a front end needs. Dial is required; the rest may be zero.
type Config struct {
	// Dial opens a stream to target, which the front end parsed from the
	// client's request (cell.Target: a name, an IPv4 or an IPv6 literal,
	// in canonical form; never the zero Target). A name must not be
	// resolved locally. ctx bounds the opening only (ConnectTimeout, and
	// cancelled on forced shutdown). Errors should wrap the circuit
	// sentinels so the client gets the right reply code, or
	// ErrOnionNotFound for a .onion target it cannot reach. The front end
	// closes the returned conn.
	Dial func(ctx context.Context, iso Isolation, target cell.Target) (net.Conn, error)
	// Resolve answers Tor's SOCKS RESOLVE for host, a name in the canonical
	// form of cell.CheckHost (IP literals are answered without it),
	// preferably with an IPv4 address. Nil makes RESOLVE answer "command
	// not supported".
	Resolve func(ctx context.Context, iso Isolation, host string) (netip.Addr, error)
	// Logger receives debug-level connection outcomes, never destinations
	// or credentials. Default slog.Default(); each server adds its subsys.
	Logger *slog.Logger
	// HandshakeTimeout bounds reading the client's handshake. Default 30s.
	HandshakeTimeout time.Duration
	// ConnectTimeout bounds one Dial or Resolve. Default 2m.
	ConnectTimeout time.Duration
	// MaxConns caps concurrent client connections; a connection beyond it
	// is closed at once. Default 512.
	MaxConns int
}

// withDefaults validates c and fills its zero fields.
func (c Config) withDefaults() (Config, error) {
	switch {
	case c.Dial == nil:
		return c, errors.New("proxy config: Dial is required")
	case c.HandshakeTimeout < 0:
		return c, fmt.Errorf("proxy config: HandshakeTimeout %v is negative", c.HandshakeTimeout)
	case c.ConnectTimeout < 0:
		return c, fmt.Errorf("proxy config: ConnectTimeout %v is negative", c.ConnectTimeout)
	case c.MaxConns < 0:
		return c, fmt.Errorf("proxy config: MaxConns %d is negative", c.MaxConns)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	return c, nil
}
