package pool

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Key isolates streams: streams with different keys never share a circuit.
// It is the client's SOCKS username/password pair; the zero Key means the
// client sent none. Both are opaque bytes (bitcoind and lnd send random
// hex). The pool never logs a Key nor shows its Password.
type Key struct{ Username, Password string }

// String returns the username only, so that a Key printed by mistake does
// not leak its password.
func (k Key) String() string { return k.Username }

// GoString is String for %#v.
func (k Key) GoString() string { return fmt.Sprintf("pool.Key{Username: %q}", k.Username) }

// Path is a path Config.Select chose for a port.
type Path struct {
	// Hops are the circuit's hops, first hop first; the last one is the exit.
	Hops []circuit.HopInfo
	// Accepts reports whether the exit's advertised policy accepts port; the
	// pool puts a stream to port P only on a circuit whose path accepts P.
	// Nil accepts every port.
	Accepts func(port uint16) bool
	// Meta is the caller's own data about the path (node keeps the hops'
	// adverts, for prices and payees); the pool only hands it to Prepare.
	Meta any
}

// accepts reports whether the path's exit accepts port.
func (p Path) accepts(port uint16) bool { return p.Accepts == nil || p.Accepts(port) }

// Config configures a Pool. Select and Build are required; every other field
// may be zero and then takes the default named in its comment. Hooks run on
// pool goroutines and on Get's; they must be safe for concurrent use and
// return promptly once ctx is done (Close waits for them).
type Config struct {
	// Select returns a path whose exit accepts port and which avoids every
	// peer in exclude (hops that failed an earlier attempt of this build).
	// It must not keep exclude. Its error ends the build.
	Select func(ctx context.Context, port uint16, exclude []peer.ID) (Path, error)
	// Build builds a circuit through hops (circuit.Engine.Build). A
	// *circuit.BuildError in its error chain blames that hop alone.
	Build func(ctx context.Context, hops []circuit.HopInfo) (*circuit.Circuit, error)
	// Prepare, if set, runs after a successful Build and before the circuit
	// is pooled or handed out (node prepays the hops). An error closes the
	// circuit and counts as a failed attempt; nobody is blamed. It runs for
	// pre-built circuits too, so whatever it spends is spent on circuits
	// that may never carry a stream.
	Prepare func(ctx context.Context, c *circuit.Circuit, p Path) error
	// Report, if set, is told the outcome of using a peer: false for the hop
	// a build failed at, and for the hop at fault when a hop tears a pooled
	// circuit down (the pool finds it dead; blame.go), true for every hop
	// of a circuit once it carried its first stream (StreamOpened). It is
	// called with the pool's lock held and must not call back into it.
	Report func(p peer.ID, ok bool)

	// MaxIsolated caps the circuits held for keys (clean circuits are
	// counted by Preemptive instead). Beyond it the least recently used
	// circuit without open streams is closed; circuits carrying streams are
	// never closed for the cap, which is then exceeded until their streams
	// end. Default 64.
	MaxIsolated int
	// MaxDirtiness is how long after its first use a circuit takes new
	// streams (Tor's MaxCircuitDirtiness). Default 10m.
	MaxDirtiness time.Duration
	// IdleClose closes a key's circuit that has had no open stream for this
	// long. Default 10m.
	IdleClose time.Duration
	// Preemptive is how many clean circuits to keep built ahead of need.
	// Default 2; negative disables pre-building.
	Preemptive int
	// PredictedPorts are ports to pre-build for besides the ports streams
	// used in the last hour (e.g. 8333 for a bitcoind client). Default none.
	PredictedPorts []uint16
	// MaxBuilds caps the builds in flight, on-demand and pre-built together;
	// further on-demand builds wait for a slot. Default 8.
	MaxBuilds int
	// BuildTimeout bounds one build, all attempts and Prepare included.
	// Default 30s.
	BuildTimeout time.Duration
	// Now is the clock for dirtiness, idleness and port prediction.
	// Default time.Now.
	Now func() time.Time
	// Logger receives debug logs (never keys, ports or destinations); nil
	// discards them. The pool adds subsys=pool.
	Logger *slog.Logger
}

// withDefaults checks c and returns it with defaults applied.
func (c Config) withDefaults() (Config, error) {
	if c.Select == nil {
		return c, fmt.Errorf("pool config: Select is required")
	}
	if c.Build == nil {
		return c, fmt.Errorf("pool config: Build is required")
	}
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"MaxIsolated", int64(c.MaxIsolated)},
		{"MaxDirtiness", int64(c.MaxDirtiness)},
		{"IdleClose", int64(c.IdleClose)},
		{"MaxBuilds", int64(c.MaxBuilds)},
		{"BuildTimeout", int64(c.BuildTimeout)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("pool config: %s %d is negative", f.name, f.v)
		}
	}
	if slices.Contains(c.PredictedPorts, 0) {
		return c, fmt.Errorf("pool config: PredictedPorts holds port 0")
	}
	if c.MaxIsolated == 0 {
		c.MaxIsolated = 64
	}
	if c.MaxDirtiness == 0 {
		c.MaxDirtiness = 10 * time.Minute
	}
	if c.IdleClose == 0 {
		c.IdleClose = 10 * time.Minute
	}
	switch {
	case c.Preemptive == 0:
		c.Preemptive = 2
	case c.Preemptive < 0:
		c.Preemptive = 0
	}
	if c.MaxBuilds == 0 {
		c.MaxBuilds = 8
	}
	if c.BuildTimeout == 0 {
		c.BuildTimeout = 30 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	c.PredictedPorts = slices.Clone(c.PredictedPorts)
	slices.Sort(c.PredictedPorts)
	c.PredictedPorts = slices.Compact(c.PredictedPorts)
	return c, nil
}
