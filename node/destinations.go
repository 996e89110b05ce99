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
// people's circuits (the exit, mempool delivery and the voucher mint today;
// rendezvous plugs in the same way). Start registers every destination whose role the config
// names with the circuit engine's service Mux; adding one is a line in
// destinations, never a change to Start.
type destination struct {
	// enabled says whether this node runs the destination.
	enabled func(Config) bool
	// start builds the destination and registers its handlers with mux.
	// What it returns is closed when the node stops, after the circuit
	// engine (so no stream is still using it); it may be nil.
	start func(n *Node, mux *circuit.Mux) (io.Closer, error)
}

func destinations() []destination {
	return []destination{
		{enabled: func(c Config) bool { return c.Has(RoleExit) }, start: startExit},
		{enabled: func(c Config) bool { return c.Has(RoleMempool) }, start: startDelivery},
		// The mint sells vouchers for this node's bandwidth through
		// circuits, so buyers need not connect to it.
		{enabled: func(c Config) bool { return c.Payments.Enabled }, start: startMint},
		// Rendezvous points, intro points and HSDirs for onion services
		// (rendezvous.go).
		{enabled: func(c Config) bool { return c.Has(RoleRendezvous) }, start: startRendezvousPoint},
		// .onion streams into the Tor network through the managed tor
		// (torgateway.go).
		{enabled: func(c Config) bool { return c.Has(RoleTorGateway) }, start: startTorGateway},
	}
}

// startMint serves the node's voucher mint at the last hop (PROTOCOL.md §5
// BEGIN service mint, VOUCHERS.md §3.7) when payments are on. The mint
// keys its per-buyer caps by the circuit's session cookie; it never sees
// the client's address.
//
// Only the target cell.MintTarget is served; any other is refused with
// END service-not-offered before CONNECTED.
func startMint(n *Node, mux *circuit.Mux) (io.Closer, error) {
	if n.pay() == nil || n.pay().mint == nil {
		return nil, nil
	}
	m := n.pay().mint
	want, err := cell.ParseTarget(cell.MintTarget)
	if err != nil {
		return nil, fmt.Errorf("mint target: %w", err) // unreachable: a constant
	}
	accept := func(req circuit.BeginRequest) error {
		if req.Target != want {
			return fmt.Errorf("mint: %w", circuit.ErrServiceNotOffered)
		}
		return nil
	}
	return nil, mux.HandleServe(cell.ServiceMint, accept, func(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
		m.ServeConn(ctx, conn, req.Cookie, n.mintVia(req.Peer))
	})
}

// startExit runs the exit role: TCP out under the exit policy, and Tor's
// RESOLVE. The policy's ports go into the advert, so clients choose this
// exit only for ports it accepts.
func startExit(n *Node, mux *circuit.Mux) (io.Closer, error) {
	pol, err := n.cfg.ExitPolicy()
	if err != nil {
		return nil, err // unreachable after Validate
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
