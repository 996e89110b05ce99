package node

import (
	"errors"
	"log/slog"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/payment"
)

// logCircuitClosed logs, once c has closed, why it did: at info, with the
// circuit's ID, the hop (1-based, as in Path) that closed it or that this
// client stopped paying, that hop's peer ID and the reason. A circuit this
// client closed on request (idle, dirty, node stopping) is logged at
// debug. pc is c's payment ledger, nil when c pays nobody. Destinations
// are never logged: neither the CloseError nor a payment stop carries one.
func logCircuitClosed(log *slog.Logger, c *circuit.Circuit, pc *payment.Circuit) {
	path := c.Path()
	peerOf := func(hop int) slog.Attr {
		if hop < 1 || hop > len(path) {
			return slog.String("peer", "unknown")
		}
		return slog.String("peer", path[hop-1].Peer.String())
	}
	// A hop the client stopped paying is why the client closed c.
	for _, st := range pc.Stats() {
		if st.Stopped {
			log.Info("circuit closed: stopped paying a hop", "circuit", c.ID(), "hop", st.Index+1,
				peerOf(st.Index+1), "by", "client", "reason", "payment: "+st.LastReason)
			return
		}
	}
	var ce *circuit.CloseError
	if !errors.As(c.Err(), &ce) {
		return
	}
	switch {
	case ce.Remote:
		// Depth 0: no TEARDOWN came, so the first hop (or the link to
		// it) gave the reason.
		hop := max(ce.Depth, 1)
		log.Info("circuit closed by a hop", "circuit", c.ID(), "hop", hop, peerOf(hop),
			"by", "hop", "reason", ce.Reason.String(), "teardown", ce.Depth > 0)
	case ce.Reason != cell.ReasonRequested:
		log.Info("circuit closed by this client", "circuit", c.ID(), "by", "client", "reason", ce.Reason.String())
	default:
		log.Debug("circuit closed", "circuit", c.ID(), "by", "client", "reason", ce.Reason.String())
	}
}
