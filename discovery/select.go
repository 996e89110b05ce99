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
	// RoleRendezvous, RoleTorGateway); empty means RoleRelay.
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
	// there is one (for the final hop: one that the staked-ends rule
	// allows, so holding an unstaked node's vouchers never makes it an
	// end); weights apply among them as usual. Entry guards are
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

// staked reports whether c counts as staked under r: verified stake of at
// least r.minStake (and above zero). Below it a node is weighed and ruled
// as unstaked, so a token channel buys nothing.
func (r *selectRules) staked(c *candidate) bool {
	return c.lnNode != "" && c.stakeSat > 0 && c.stakeSat >= r.minStake
}

// selectRules are the tunables of path selection.
type selectRules struct {
	now              time.Time
	allowSameNetwork bool
	failBackoff      time.Duration
	ageRamp          time.Duration
	// unstakedShare bounds the total weight of unstaked candidates in
	// one pick to this fraction of the staked candidates' weight (0: no
	// bound). The Service sets UnstakedMaxShare.
	unstakedShare float64
	// stakedEnds keeps unstaked candidates out of the guard and final
	// positions whenever a staked candidate fits the pick (they stay
	// middles, within unstakedShare). The Service sets it.
	stakedEnds bool
	// minStake is the effective stake (sat) below which a candidate
	// counts as unstaked (0: any stake counts). The Service sets
	// MinStakeSat.
	minStake int64
	// quorum is how many staked families (stakedFamilies) must fit a
	// pick before stakedEnds and unstakedShare apply to it (0: always).
	// The Service sets StakedQuorum.
	quorum int
	// familyCap caps one staked family's share of a position (capFamilies;
	// 0: no cap). The Service sets FamilyMaxShare.
	familyCap float64
}

// position is the place in a path a pick fills. The ends see the client
// and the destination, so they are held to stricter rules than middles.
type position int

const (
	posGuard  position = iota // hop 1, the entry guard
	posMiddle                 // hops between the guard and the final hop
	posFinal                  // the last hop, playing PathRequest.Final
)

// role is the role a candidate plays in pos for req.
func (p position) role(req *PathRequest) Role {
	if p == posFinal {
		return req.Final
	}
	return RoleRelay
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
	stakeF := UnstakedWeight
	if r.staked(c) {
		stakeF = stakeWeight(c.stakeSat)
	}
	return stakeF * ageF * succF * priceF
}

// pickWeighted picks one of pool for pos, not conflicting with chosen, with
// the probabilities positionWeights gives.
func pickWeighted(rng *rand.Rand, pool []*candidate, pos position, req *PathRequest, r *selectRules, chosen []*candidate) *candidate {
	var elig []*candidate
	role := pos.role(req)
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
	w := positionWeights(elig, pos, req, r)
	var sum float64
	for _, x := range w {
		sum += x
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

// positionWeights returns the selection weight in pos of each of elig (the
// usable candidates that fit the pick), in order. A candidate counts as
// staked with at least minStake; the pick is "staked" when at least quorum
// staked families fit it (stakedFamilies). Rules, in order:
//   - with stakedEnds, in a staked pick the guard and final positions take
//     only staked candidates, as Tor gives the Guard and Exit flags only to
//     established relays: an identity that costs no bitcoin is never
//     either end of a path on a staked network. Where fewer families
//     stake (a network whose honest relays do not stake yet) the ends
//     stay open to all, so a few stakers cannot take every end;
//   - Prefer then narrows the final hop and middles to the preferred ones
//     if any;
//   - weight: each candidate's own weight (stake, age, success, price),
//     split between candidates sharing a home network (unless the
//     same-network rule is off), so a thousand nodes in one /16 weigh as
//     one, and between candidates proving one Lightning node (one stake,
//     however many identities);
//   - in a staked pick, all unstaked candidates together weigh at most
//     unstakedShare of the staked ones;
//   - exit weight is saved for exits: in the guard and middle positions
//     exits play only with the part of their weight beyond a third of the
//     total (Tor's bandwidth weights Wgd/Wmd = 0 when exits are scarce);
//   - last, no staked family (Lightning node) holds more than familyCap
//     of the position, or 1/n of it for n families and unstaked nodes if
//     that is more (capFamilies): whales do not dominate, and the first
//     stakers of an unstaked network get at most the cap each.
//
// The weights are not normalised; a zero weight is never picked while any
// other is positive.
func positionWeights(elig []*candidate, pos position, req *PathRequest, r *selectRules) []float64 {
	w := make([]float64, len(elig))
	// Staked ends first, then Prefer within them: holding an unstaked
	// node's vouchers must not make it an end.
	keep := func(c *candidate) bool { return true }
	stakedPick := stakedFamilies(elig, r, max(r.quorum, 1)) >= max(r.quorum, 1)
	if r.stakedEnds && pos != posMiddle && stakedPick {
		keep = r.staked
	}
	if req.Prefer != nil && pos != posGuard && slices.ContainsFunc(elig, func(c *candidate) bool { return keep(c) && req.Prefer(c.ad.Peer) }) {
		prev := keep
		keep = func(c *candidate) bool { return prev(c) && req.Prefer(c.ad.Peer) }
	}
	share := map[netGroup]int{}
	lnShare := map[string]int{}
	for _, c := range elig {
		if !keep(c) {
			continue
		}
		if !r.allowSameNetwork && c.hasHome {
			share[c.home]++
		}
		if c.lnNode != "" {
			lnShare[c.lnNode]++
		}
	}
	role := pos.role(req)
	var stakedSum, unstakedSum float64
	for i, c := range elig {
		if !keep(c) {
			continue
		}
		w[i] = c.weight(role, req, r)
		if c.hasHome && share[c.home] > 1 {
			w[i] /= float64(share[c.home])
		}
		if n := lnShare[c.lnNode]; c.lnNode != "" && n > 1 {
			w[i] /= float64(n) // one stake, however many identities
		}
		if r.staked(c) {
			stakedSum += w[i]
		} else {
			unstakedSum += w[i]
		}
	}
	if stakedPick && r.unstakedShare > 0 && stakedSum > 0 && unstakedSum > r.unstakedShare*stakedSum {
		// The unstaked floor is per node, so without a bound a Sybil in
		// many /16s would get weight for free, linear in its identities.
		// All unstaked candidates together weigh at most unstakedShare of
		// the staked ones, shared in proportion to their own weights.
		scale := r.unstakedShare * stakedSum / unstakedSum
		for i, c := range elig {
			if !r.staked(c) {
				w[i] *= scale
			}
		}
	}
	if role == RoleRelay {
		saveExits(elig, w)
	}
	capFamilies(elig, w, r)
	return w
}

// saveExits scales the exits' weights in w down to the part of their
// total beyond a third of everyone's, for a guard or middle pick.
func saveExits(elig []*candidate, w []float64) {
	var sum, exitSum float64
	for i, c := range elig {
		sum += w[i]
		if c.ad.HasRole(RoleExit) {
			exitSum += w[i]
		}
	}
	if exitSum > 0 {
		// Exit weight is scarce: like Tor's bandwidth weights, exits play
		// guard or middle only with the part of their weight beyond a
		// third of the total, so an attacker cannot buy the guard and the
		// exit position with one weight.
		scale := max(0, exitSum-sum/3) / exitSum
		for i, c := range elig {
			if c.ad.HasRole(RoleExit) {
				w[i] *= scale
			}
		}
	}
}

// stakedFamilies counts, greedily up to want, staked candidates of elig
// that pairwise share no Lightning node and (unless r.allowSameNetwork)
// no home network or declared family: independent operators a position
// could spread over. Greedy undercounts at worst, which only keeps the
// pick open to unstaked nodes.
func stakedFamilies(elig []*candidate, r *selectRules, want int) int {
	var fams []*candidate
	for _, c := range elig {
		if !r.staked(c) {
			continue
		}
		ok := true
		for _, o := range fams {
			if c.lnNode == o.lnNode || !r.allowSameNetwork &&
				(c.hasHome && o.hasHome && c.home == o.home || sameFamily(c, o)) {
				ok = false
				break
			}
		}
		if ok {
			fams = append(fams, c)
			if len(fams) >= want {
				break
			}
		}
	}
	return len(fams)
}

// capFamilies lowers, in place, the weights of staked families (one per
// Lightning node) that hold more than the cap of the position's total:
// r.familyCap, or 1/n if larger, n counting the families and unstaked
// candidates of positive weight. It fills like water: a capped family
// holds exactly the cap of the final total, and the others keep their
// weights (so their shares grow in proportion). When capped families alone
// would exceed the whole, each keeps the weight of all the others.
func capFamilies(elig []*candidate, w []float64, r *selectRules) {
	if r.familyCap <= 0 {
		return
	}
	fam := map[string]float64{}
	n := 0
	for i, c := range elig {
		if w[i] <= 0 {
			continue
		}
		if !r.staked(c) {
			n++
			continue
		}
		if _, ok := fam[c.lnNode]; !ok {
			n++
		}
		fam[c.lnNode] += w[i]
	}
	if n == 0 {
		return
	}
	capShare := max(r.familyCap, 1/float64(n))
	capped := map[string]bool{}
	rest := func() float64 {
		var x float64
		for i, c := range elig {
			if !(r.staked(c) && capped[c.lnNode]) {
				x += w[i]
			}
		}
		return x
	}
	for {
		k := float64(len(capped))
		left := rest()
		if k*capShare >= 1 || left <= 0 {
			break
		}
		limit := capShare * left / (1 - k*capShare) * (1 + 1e-12)
		grew := false
		for f, x := range fam {
			if !capped[f] && x > limit {
				capped[f], grew = true, true
			}
		}
		if !grew {
			break
		}
	}
	if len(capped) == 0 {
		return
	}
	k, left := float64(len(capped)), rest()
	var target float64
	switch {
	case left <= 0:
		target = 1 // only capped families: equal shares
	case k*capShare >= 1:
		target = left
	default:
		target = capShare * left / (1 - k*capShare)
	}
	for i, c := range elig {
		if r.staked(c) && capped[c.lnNode] && fam[c.lnNode] > 0 {
			w[i] *= target / fam[c.lnNode]
		}
	}
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
		final = pickWeighted(rng, pool, posFinal, &fr, r, nil)
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
		m := pickWeighted(rng, pool, posMiddle, &req, r, chosen)
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
		g := pickWeighted(rng, pool, posGuard, &req, r, have)
		if g == nil {
			break
		}
		have = append(have, g)
		added = append(added, g)
	}
	return added
}
