package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
)

// A destination is a service this node offers at the last hop of other
// people's circuits (the exit and the voucher mint today; mempool delivery
// and rendezvous plug in the same way). Start registers every destination whose role the config
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
		// The mint sells vouchers for this node's bandwidth through
		// circuits, so buyers need not connect to it. Start registers by
		// role; a node with both roles runs it once.
		{role: RoleRelay, start: startMint},
		{role: RoleExit, start: startMint},
	}
}

// startMint serves the node's voucher mint at the last hop (PROTOCOL.md §5
// BEGIN service mint, VOUCHERS.md §3.7) when payments are on. The mint
// keys its per-buyer caps by the circuit's session cookie; it never sees
// the client's address.
//
// Only the target cell.MintTarget is served; any other is refused with
// END service-not-offered before CONNECTED. Mux.HandleServe answers
// CONNECTED before its handler sees the request, so the check runs in a
// Handle func in front of a private Mux whose HandleServe owns the serving
// goroutines; that Mux is returned, to be closed after the engine.
func startMint(n *Node, mux *circuit.Mux) (io.Closer, error) {
	if n.pay == nil || n.pay.mint == nil || slices.Contains(mux.Services(), cell.ServiceMint) {
		return nil, nil
	}
	m := n.pay.mint
	want, err := cell.ParseTarget(cell.MintTarget)
	if err != nil {
		return nil, fmt.Errorf("mint target: %w", err) // unreachable: a constant
	}
	serve := circuit.NewMux()
	if err := serve.HandleServe(cell.ServiceMint, func(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
		m.ServeConn(ctx, conn, req.Cookie)
	}); err != nil {
		serve.Close()
		return nil, err
	}
	if err := mux.Handle(cell.ServiceMint, func(ctx context.Context, req circuit.BeginRequest) (net.Conn, error) {
		if req.Target != want {
			return nil, fmt.Errorf("mint: %w", circuit.ErrServiceNotOffered)
		}
		return serve.Begin(ctx, req)
	}); err != nil {
		serve.Close()
		return nil, err
	}
	return serve, nil
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
