package discovery

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PathRequest asks SelectPath for a path.
type PathRequest struct {
	// Hops is the number of hops including the final one; 0 means 3.
	// Hop 1 is always an entry guard when Hops >= 2.
	Hops int
	// Final is the role of the last hop (RoleExit, RoleMempool,
	// RoleRendezvous); empty means RoleRelay.
	Final Role
	// Port, for Final == RoleExit, is the target port the exit policy must
	// allow; 0 means any exit.
	Port uint16
	// MaxPriceSat is the highest price in sat/MB the client pays any hop for
	// the role it plays; 0 means no limit.
	MaxPriceSat uint64
	// Exclude lists peers that must not appear in the path.
	Exclude []peer.ID
	// Prefer, if set, narrows the choice of the final hop and the
	// middles to the usable candidates it returns true for, whenever
	// there is one; weights apply among them as usual. Entry guards are
	// not affected. The client passes "the wallet already holds this
	// node's vouchers", so a circuit never waits for a purchase from its
	// middle or exit. It must be cheap and must not block.
	Prefer func(peer.ID) bool
}

// newCandidate builds the selection view of ad; observed is the address we
// reached the node on (nil if unknown); allowPrivate is Config.AllowPrivate
// (private addresses form groups only when it is on).
func newCandidate(ad *Advert, observed ma.Multiaddr, allowPrivate bool) *candidate {
	c := &candidate{ad: ad, groups: groupsOf(allowPrivate, ad.Addrs...), family: slices.Clone(ad.Family)}
	slices.Sort(c.family)
	if observed != nil {
		if g, ok := groupOf(observed, allowPrivate); ok {
			c.home, c.hasHome = g, true
			if !slices.Contains(c.groups, g) {
				c.groups = append(c.groups, g)
			}
		}
	}
	if !c.hasHome && len(c.groups) > 0 {
		c.home, c.hasHome = c.groups[0], true
	}
	return c
}

// candidate is one verified advert plus what this client observed of it.
// Values are snapshots owned by the selection call.
type candidate struct {
	ad *Advert
	// groups are the /16 (/32) networks of the advertised addresses and of
	// the address we actually reached the node on.
	groups []netGroup
	// home is the network the weight split counts the node in: the one we
	// reached it on if known (it cannot lie about that), else its first
	// advertised one. A node advertising addresses in other networks thus
	// only excludes itself from paths, and cannot dilute others' weight.
	home netGroup
	// hasHome tells whether home is set.
	hasHome bool
	// family is ad.Family, sorted.
	family []peer.ID
	// firstSeen is when this client first verified an advert of the peer.
	firstSeen time.Time
	// ok and fail count Report results.
	ok, fail uint32
	// lastFail is the time of the latest failure (zero if none).
	lastFail time.Time
	// lnNode is the Lightning node whose stake proof this client verified
	// ("" if none); stakeSat its effective stake (stake.go).
	lnNode   string
	stakeSat int64
}

// selectRules are the tunables of path selection.
type selectRules struct {
	now              time.Time
	allowSameNetwork bool
	failBackoff      time.Duration
	ageRamp          time.Duration
}

// usable reports whether c may fill a hop playing role for req.
func (c *candidate) usable(role Role, req *PathRequest, r *selectRules) bool {
	ad := c.ad
	if !ad.Fresh(r.now) || !ad.HasRole(role) {
		return false
	}
	if req.MaxPriceSat > 0 && ad.Price(role) > req.MaxPriceSat {
		return false
	}
	if role == RoleExit && req.Port != 0 && !ad.AllowsPort(req.Port) {
		return false
	}
	if !c.lastFail.IsZero() && r.now.Sub(c.lastFail) < r.failBackoff {
		return false
	}
	return !slices.Contains(req.Exclude, ad.Peer)
}

// sameFamily reports whether a and b are one operator's: each declares the
// other. A one-sided claim counts for nothing, so a node cannot push honest
// nodes out of its paths, nor itself out of theirs, by declaring them.
// Both family lists are sorted (newCandidate).
func sameFamily(a, b *candidate) bool {
	_, ab := slices.BinarySearch(a.family, b.ad.Peer)
	_, ba := slices.BinarySearch(b.family, a.ad.Peer)
	return ab && ba
}

// conflicts reports whether a and b may not share a path.
func conflicts(a, b *candidate, r *selectRules) bool {
	if a.ad.Peer == b.ad.Peer {
		return true
	}
	if r.allowSameNetwork {
		return false
	}
	if a.lnNode != "" && a.lnNode == b.lnNode {
		return true // one Lightning node's stake: one family
	}
	for _, g := range a.groups {
		if slices.Contains(b.groups, g) {
			return true
		}
	}
	return sameFamily(a, b)
}

// weight is the selection weight of c for role:
//   - stake: the node's verified Lightning stake, age-weighted and capped
//     (stakeWeight), UnstakedWeight without one; this is what a Sybil must
//     pay for, so it dominates;
//   - age: time since this client first saw the node, ramping from 5% to
//     100% over ageRamp, so a fresh batch of Sybils starts nearly weightless
//     for a client that has been running a while;
//   - observed success: (ok+1)/(ok+fail+2);
//   - price: 0.5..1, cheaper is better but undercutting buys at most 2x.
//
// Self-reported capacity does not count: it costs nothing to claim.
func (c *candidate) weight(role Role, req *PathRequest, r *selectRules) float64 {
	age := r.now.Sub(c.firstSeen)
	ageF := 1.0
	if r.ageRamp > 0 {
		ageF = min(max(float64(age)/float64(r.ageRamp), 0.05), 1)
	}
	succF := float64(c.ok+1) / float64(c.ok+c.fail+2)
	priceF := 1.0
	if req.MaxPriceSat > 0 {
		priceF = 1 - 0.5*float64(min(c.ad.Price(role), req.MaxPriceSat))/float64(req.MaxPriceSat)
	}
	return stakeWeight(c.stakeSat) * ageF * succF * priceF
}

// pickWeighted picks one of pool for role, not conflicting with chosen. The
// weights of nodes sharing a home network are split between them (unless the
// same-network rule is off), so a thousand nodes in one /16 weigh as one.
func pickWeighted(rng *rand.Rand, pool []*candidate, role Role, req *PathRequest, r *selectRules, chosen []*candidate) *candidate {
	var elig []*candidate
	for _, c := range pool {
		if !c.usable(role, req, r) {
			continue
		}
		bad := false
		for _, o := range chosen {
			if conflicts(c, o, r) {
				bad = true
				break
			}
		}
		if !bad {
			elig = append(elig, c)
		}
	}
	if len(elig) == 0 {
		return nil
	}
	if req.Prefer != nil {
		if pref := slices.DeleteFunc(slices.Clone(elig), func(c *candidate) bool { return !req.Prefer(c.ad.Peer) }); len(pref) > 0 {
			elig = pref
		}
	}
	share := map[netGroup]int{}
	lnShare := map[string]int{}
	for _, c := range elig {
		if !r.allowSameNetwork && c.hasHome {
			share[c.home]++
		}
		if c.lnNode != "" {
			lnShare[c.lnNode]++
		}
	}
	w := make([]float64, len(elig))
	var sum, exitSum float64
	for i, c := range elig {
		w[i] = c.weight(role, req, r)
		if c.hasHome && share[c.home] > 1 {
			w[i] /= float64(share[c.home])
		}
		if n := lnShare[c.lnNode]; c.lnNode != "" && n > 1 {
			w[i] /= float64(n) // one stake, however many identities
		}
		sum += w[i]
		if c.ad.HasRole(RoleExit) {
			exitSum += w[i]
		}
	}
	if role == RoleRelay && exitSum > 0 {
		// Exit weight is scarce: like Tor's bandwidth weights, exits play
		// guard or middle only with the part of their weight beyond a
		// third of the total, so an attacker cannot buy the guard and the
		// exit position with one weight.
		scale := max(0, exitSum-sum/3) / exitSum
		sum = 0
		for i, c := range elig {
			if c.ad.HasRole(RoleExit) {
				w[i] *= scale
			}
			sum += w[i]
		}
	}
	if sum <= 0 {
		return elig[rng.IntN(len(elig))]
	}
	x := rng.Float64() * sum
	for i, c := range elig {
		x -= w[i]
		if x < 0 && w[i] > 0 {
			return c
		}
	}
	for i := len(elig) - 1; i >= 0; i-- {
		if w[i] > 0 {
			return elig[i]
		}
	}
	return elig[len(elig)-1]
}

// normalize fills defaults into req and checks it.
func (req *PathRequest) normalize() error {
	if req.Hops == 0 {
		req.Hops = 3
	}
	if req.Hops < 1 || req.Hops > 8 {
		return fmt.Errorf("%w: PathRequest.Hops %d not in 1..8", ErrBadConfig, req.Hops)
	}
	if req.Final == "" {
		req.Final = RoleRelay
	}
	if !validRole(req.Final) {
		return fmt.Errorf("%w: PathRequest.Final %q", ErrBadConfig, req.Final)
	}
	return nil
}

// pickPath chooses a path for req from pool: the final hop first (it is the
// most constrained), then the first usable guard in guards order that does
// not conflict with it, then middles. guards may be empty only for Hops == 1.
// It returns ErrNoPath naming the position it could not fill.
func pickPath(rng *rand.Rand, pool []*candidate, guards []*candidate, req PathRequest, r *selectRules) ([]*candidate, error) {
	if err := req.normalize(); err != nil {
		return nil, err
	}
	// A final hop that conflicts with every guard is redrawn without it,
	// up to finalRedraws times: a liar cannot turn its claims into a
	// failed build.
	var final, guard *candidate
	excl := slices.Clone(req.Exclude)
	for try := 0; try < finalRedraws; try++ {
		fr := req
		fr.Exclude = excl
		final = pickWeighted(rng, pool, req.Final, &fr, r, nil)
		if final == nil {
			return nil, fmt.Errorf("%w: no usable %s", ErrNoPath, req.Final)
		}
		if req.Hops == 1 {
			return []*candidate{final}, nil
		}
		guard = nil
		for _, g := range guards {
			if g.usable(RoleRelay, &req, r) && !conflicts(g, final, r) {
				guard = g
				break
			}
		}
		if guard != nil {
			break
		}
		excl = append(excl, final.ad.Peer)
	}
	if guard == nil {
		return nil, fmt.Errorf("%w: no usable entry guard", ErrNoPath)
	}
	chosen := []*candidate{guard, final}
	for len(chosen) < req.Hops {
		m := pickWeighted(rng, pool, RoleRelay, &req, r, chosen)
		if m == nil {
			return nil, fmt.Errorf("%w: no usable middle relay", ErrNoPath)
		}
		chosen = append(chosen, m)
	}
	// Order: guard, middles..., final.
	path := make([]*candidate, 0, req.Hops)
	path = append(path, guard)
	path = append(path, chosen[2:]...)
	return append(path, final), nil
}

// pickGuards tops up guards to want usable entries from pool, choosing by
// weight among relays that conflict with no existing usable guard. It
// returns the new guards only. req carries the price limit and exclusions of
// the request that needed them (zero request: any relay).
func pickGuards(rng *rand.Rand, pool []*candidate, guards []*candidate, want int, req PathRequest, r *selectRules) []*candidate {
	_ = req.normalize()
	req.Prefer = nil // guards are chosen for the long term, not for what the wallet holds
	var have []*candidate
	for _, g := range guards {
		if g.usable(RoleRelay, &req, r) {
			have = append(have, g)
		}
	}
	var added []*candidate
	for len(have) < want {
		g := pickWeighted(rng, pool, RoleRelay, &req, r, have)
		if g == nil {
			break
		}
		have = append(have, g)
		added = append(added, g)
	}
	return added
}
