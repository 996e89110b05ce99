package node

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
)

// A destination is a service this node offers at the last hop of other
// people's circuits (exit today; mempool delivery and rendezvous plug in
// the same way). Start registers every destination whose role the config
// names with the circuit engine's service Mux; adding one is a line in
// destinations, never a change to Start.
type destination struct {
	role Role
	// start builds the destination and registers its handlers with mux.
	// What it returns is closed when the node stops, after the circuit
	// engine (so no stream is still using it); it may be nil.
	start func(n *Node, mux *circuit.Mux) (io.Closer, error)
}

func destinations() []destination {
	return []destination{
		{role: RoleExit, start: startExit},
	}
}

// startExit runs the exit role: TCP out under the exit policy, and Tor's
// RESOLVE. The policy's ports go into the advert, so clients choose this
// exit only for ports it accepts.
func startExit(n *Node, mux *circuit.Mux) (io.Closer, error) {
	pol, err := exit.NewPolicy(n.cfg.Exit.Policy, n.cfg.Exit.AllowLoopback)
	if err != nil {
		return nil, fieldErr("exit.policy", "%v", err) // unreachable after Validate
	}
	d, err := exit.New(pol, exit.WithDialTimeout(n.cfg.Exit.DialTimeout), exit.WithLogger(n.log))
	if err != nil {
		return nil, fmt.Errorf("exit: %w", err)
	}
	for _, r := range pol.AllowedPorts() {
		n.exitPorts = append(n.exitPorts, discovery.PortRange{Lo: r.Lo, Hi: r.Hi})
	}
	if err := mux.Handle(cell.ServiceExit, func(ctx context.Context, req circuit.BeginRequest) (net.Conn, error) {
		return d.Dial(ctx, req.Target)
	}); err != nil {
		return nil, err
	}
	return nil, mux.HandleResolve(d.Resolve)
}
