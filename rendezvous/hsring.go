package rendezvous

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha3"
	"encoding/binary"
	"slices"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"
)

// The HSDir ring (PROTOCOL.md §7.2; rend-spec-v3 §2.2.3's hash ring is the
// model). Which rendezvous-role nodes store a service's descriptor for a
// period is not the service's choice, nor the HSDirs' claim: for each
// replica r, every node of the rendezvous role gets the rank
//
//	SHA3-256("co-infuse hsdir rank v1" | A' | INT_8(period) | INT_4(L) | INT_1(r) | peer_id)
//
// and the responsible HSDirs of replica r are the nodes with the lowest
// ranks (highest-random-weight hashing, one independent order per
// replica). Tor orders relays on a ring by SHA3(peer | shared random value
// of the consensus); we have no consensus, so the shared input is the
// period's blinded key A' with the period: every node computes it from the
// address and its clock, it changes every period, and nobody who does not
// know the address can compute it. Someone who knows the address can
// compute it for any future period, though (see THREAT_MODEL.md, "Onion
// services": what grinding peer IDs buys). The HSDir age gate
// (hsdirage.go) raises that cost: nodes rank only the nodes they have
// known for a day.
//
// The service, its HSDirs and the client each rank the nodes of their own
// discovery view, and views differ. So the service stores on more nodes
// than one (HSDirReplicas × Config.HSDirs), an HSDir accepts a descriptor
// while it is among the hsdirAcceptRank lowest of its own view for some
// replica (more than the service's spread), and the client asks the
// lowest-ranked nodes of both replicas, hsdirFetchRound at a time, up to
// hsdirFetchSpread per replica. TestHSDirRingViewDivergence measures how
// often the client finds the descriptor when each side sees a random
// 80-90 % of the nodes.
const (
	hsdirRankContext = "co-infuse hsdir rank v1"
	// HSDirReplicas is how many independent rankings a descriptor has.
	HSDirReplicas = 2
	// DefaultHSDirSpread is how many HSDirs per replica a service stores
	// its descriptor on (Config.HSDirs), as Tor's hsdir_spread_store.
	DefaultHSDirSpread = 4
	// hsdirAcceptRank: an HSDir stores a descriptor only while it is
	// among this many lowest-ranked nodes of its own view for a replica.
	hsdirAcceptRank = 8
	// hsdirFetchSpread is how many nodes per replica a client may ask;
	// hsdirFetchRound of them (the lowest-ranked, alternating replicas)
	// are asked at once, then the next round if none had the descriptor.
	hsdirFetchSpread = 6
	hsdirFetchRound  = 6
)

// hsdirRank is node p's rank for the descriptors of blinded key b in
// period, replica r: lower is closer.
func hsdirRank(b ed25519.PublicKey, period uint64, periodLen uint32, r uint8, p peer.ID) [32]byte {
	hsdirRanks.Add(1)
	h := sha3.New256()
	h.Write([]byte(hsdirRankContext))
	h.Write(b)
	var n [13]byte
	binary.BigEndian.PutUint64(n[:8], period)
	binary.BigEndian.PutUint32(n[8:12], periodLen)
	n[12] = r
	h.Write(n[:])
	h.Write([]byte(p))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// hsdirRanks counts the ranks computed (tests measure what a put costs).
var hsdirRanks atomic.Uint64

// HSDirOrder returns the nodes of view (duplicates dropped) in rank order
// for replica r of blinded key b in period: the responsible HSDirs first.
func HSDirOrder(view []peer.ID, b ed25519.PublicKey, period uint64, periodLen uint32, r uint8) []peer.ID {
	type ranked struct {
		p    peer.ID
		rank [32]byte
	}
	seen := make(map[peer.ID]bool, len(view))
	rs := make([]ranked, 0, len(view))
	for _, p := range view {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		rs = append(rs, ranked{p, hsdirRank(b, period, periodLen, r, p)})
	}
	slices.SortFunc(rs, func(x, y ranked) int { return bytes.Compare(x.rank[:], y.rank[:]) })
	out := make([]peer.ID, len(rs))
	for i, x := range rs {
		out[i] = x.p
	}
	return out
}

// ResponsibleHSDirs returns the distinct nodes a service stores on: the
// spread lowest-ranked nodes of view for each replica, replica 0's first.
func ResponsibleHSDirs(view []peer.ID, b ed25519.PublicKey, period uint64, periodLen uint32, spread int) []peer.ID {
	var out []peer.ID
	for r := range uint8(HSDirReplicas) {
		for _, p := range firstN(HSDirOrder(view, b, period, periodLen, r), spread) {
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// FetchOrder returns the nodes a client asks, in order: the lowest-ranked
// of each replica in turn (replica 0's first, replica 1's first, replica
// 0's second, ...), spread per replica at most, each once.
func FetchOrder(view []peer.ID, b ed25519.PublicKey, period uint64, periodLen uint32, spread int) []peer.ID {
	var orders [HSDirReplicas][]peer.ID
	for r := range orders {
		orders[r] = firstN(HSDirOrder(view, b, period, periodLen, uint8(r)), spread)
	}
	var out []peer.ID
	for i := range spread {
		for _, o := range orders {
			if i < len(o) && !slices.Contains(out, o[i]) {
				out = append(out, o[i])
			}
		}
	}
	return out
}

// IsResponsible reports whether self may store the descriptors of b for
// period by its own view (self is counted whether view lists it or not):
// it is among the accept lowest-ranked nodes for some replica. A view of
// accept nodes or fewer cannot tell, and accepts.
//
// An HSDir asks this of every descriptor put, before anything else, so it
// does not sort the view: it counts the nodes ranked before self and stops
// at accept. For a key self is far from, as most keys anyone makes up
// are, that is about accept/f ranks where f is self's place in the order
// (a fraction), not the whole view.
func IsResponsible(self peer.ID, view []peer.ID, b ed25519.PublicKey, period uint64, periodLen uint32, accept int) bool {
	for r := range uint8(HSDirReplicas) {
		mine := hsdirRank(b, period, periodLen, r, self)
		var before []peer.ID // distinct nodes ranked before self, < accept
		for _, p := range view {
			if p == "" || p == self || slices.Contains(before, p) {
				continue
			}
			if rk := hsdirRank(b, period, periodLen, r, p); bytes.Compare(rk[:], mine[:]) < 0 {
				if before = append(before, p); len(before) >= accept {
					break
				}
			}
		}
		if len(before) < accept {
			return true
		}
	}
	return false
}

func firstN(ps []peer.ID, n int) []peer.ID {
	if len(ps) > n {
		return ps[:n]
	}
	return ps
}
