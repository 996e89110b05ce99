package rendezvous

import (
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
)

// The HSDir age gate (PROTOCOL.md §7.2, THREAT_MODEL.md "Onion services").
// The ring's input (blinded key, period, replica) is known in advance to
// anyone who knows the address, so an attacker can grind peer IDs that
// rank lowest for a service's future period. Without a shared random
// value to make the input unpredictable, the gate makes a ground ID
// useless until it has been in the observer's view for HSDirMinAge: the
// attacker must run and advertise each such node that long before it can
// hold the service's descriptor. As Tor's HSDir flag (96 hours of uptime
// in the consensus), but judged by each node from its own discovery
// records, which outlive restarts.
const (
	// HSDirMinAge is how long a rendezvous-role node must have been known
	// to an observer (since it first verified the node's advert) before
	// the observer ranks it on the HSDir ring: one descriptor period, so
	// a node has been in the network for a whole period before it may
	// hold descriptors, and observers of different ages disagree only on
	// the nodes that joined in the last day (the ring tolerates views
	// that differ by far more; TestHSDirAgeGateMixedObservers).
	HSDirMinAge = 24 * time.Hour
	// HSDirBootstrapSlack: nodes an observer first saw within this long
	// of the beginning of its records count as old. A node that has just
	// started cannot tell a node that joined an hour ago from one that
	// has run for a year; it ranks every node it found while bootstrapping,
	// as every node did before the gate, and applies the gate to nodes
	// that appear later.
	HSDirBootstrapSlack = time.Hour
)

// HSDirEligible reports whether a node that the observer first saw at
// firstSeen may be ranked on the HSDir ring at now, by an observer whose
// records of the network begin at since.
func HSDirEligible(firstSeen, since, now time.Time) bool {
	return !firstSeen.After(since.Add(HSDirBootstrapSlack)) || now.Sub(firstSeen) >= HSDirMinAge
}

// GateHSDirView keeps the nodes of view that HSDirEligible allows. first
// holds the observer's first-seen time of each node it knows; a node it
// has no time for (this node itself, or one it has just learned of) is
// kept only if it is self. The result keeps view's order.
func GateHSDirView(view []circuit.HopInfo, self peer.ID, first map[peer.ID]time.Time, since, now time.Time) []circuit.HopInfo {
	var out []circuit.HopInfo
	for _, h := range view {
		p := h.Peer
		if p == self {
			out = append(out, h)
			continue
		}
		if t, ok := first[p]; ok && HSDirEligible(t, since, now) {
			out = append(out, h)
		}
	}
	return out
}
