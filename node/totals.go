package node

import (
	"maps"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/payment"
)

// hopTotals keeps, per node, what the client's closed circuits sent
// through it and paid it since start, so status can report lifetime
// figures that match the node's own counters.
type hopTotals struct {
	mu sync.Mutex
	// m is guarded by mu. Keys are hops of circuits this client built:
	// nodes discovery chose, so at most a few per path built.
	m map[peer.ID]NodeStatus
}

// fold adds a closed circuit's figures (pc may be nil: unpaid).
func (t *hopTotals) fold(c *circuit.Circuit, pc *payment.Circuit) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[peer.ID]NodeStatus)
	}
	addCircuit(t.m, c, pc)
}

// credited adds sats a hop's handshake credited (payment.ClientConfig.Credited):
// counted when credited, so builds that then failed count too.
func (t *hopTotals) credited(p peer.ID, sats uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[peer.ID]NodeStatus)
	}
	ns := t.m[p]
	ns.Peer = p.String()
	ns.SatsPaid += sats
	t.m[p] = ns
}

// snapshot returns a copy of the closed circuits' totals.
func (t *hopTotals) snapshot() map[peer.ID]NodeStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := maps.Clone(t.m)
	if out == nil {
		out = make(map[peer.ID]NodeStatus)
	}
	return out
}

// addCircuit adds c's per-hop bytes and pc's per-hop sats to m, but for
// the sats of the hops' handshakes, which hopTotals.credited counted.
func addCircuit(m map[peer.ID]NodeStatus, c *circuit.Circuit, pc *payment.Circuit) {
	path := c.Path()
	carried := c.HopBytes()
	for i, h := range path {
		ns := m[h.Peer]
		ns.Peer = h.Peer.String()
		ns.Circuits++
		if i < len(carried) {
			ns.BytesCarried += carried[i]
		}
		m[h.Peer] = ns
	}
	for _, ps := range pc.Stats() {
		ns := m[ps.Peer]
		ns.SatsPaid += ps.SatsPaid - min(ps.HandshakeSat, ps.SatsPaid) // the handshake's: credited
		if ps.OverCharged {
			ns.OverCharged++
		}
		m[ps.Peer] = ns
	}
}
