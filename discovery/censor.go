package discovery

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	dhtpb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	mh "github.com/multiformats/go-multihash"
)

// Content censorship of the provider keys (DISCOVERY.md §6.1). The eight
// provider keys are fixed, so an attacker can grind peer IDs until a few
// of its DHT servers are closer to one key than any honest server; a
// provider then stores its record only with them and a client asks only
// them, and they drop it (Sridhar et al., NDSS 2024). Such servers are
// anomalously close: among N uniformly random IDs the number within XOR
// distance x of a key (x as a fraction of the keyspace) is Poisson(N·x).
// A node estimates N from the peers closest to a random point, which
// nobody could grind for, and flags a key when its j closest peers sit so
// close that P(Poisson(N·x_j) >= j) < censorAlpha for some j. It then
// looks further: it walks toward the key through the peers beyond the
// suspicious ones and uses the next censorRegion peers as well, both to
// put its provider records (a provider) and to ask for them (a client).

const (
	// censorAlpha is the tail probability below which the closest peers
	// of a key count as ground: about one false alarm per million lookups
	// (a false alarm only costs a few extra DHT queries).
	censorAlpha = 1e-6
	// censorSizeSafety multiplies the network-size estimate before the
	// test, so an estimate too low by up to this factor raises no alarm.
	censorSizeSafety = 2
	// censorRegion is how many peers beyond the suspicious ones are used.
	censorRegion = 20
	// censorWalkRounds and censorWalkWidth bound the walk past them.
	censorWalkRounds = 3
	censorWalkWidth  = 8
	// sizeWalks is how many walks to random points a size estimate takes
	// the smallest of.
	sizeWalks = 3
	// sizeEstimateTTL is how long a network-size estimate is reused.
	sizeEstimateTTL = 10 * time.Minute
	// censorWarnEvery spaces warnings about one captured key (lookups
	// in between log at debug level).
	censorWarnEvery = time.Hour
	// maxCensorWarned bounds the keys whose last warning is remembered
	// (onion-service index keys are many).
	maxCensorWarned = 256
)

// kadPoint is the kad-dht keyspace position of a key or peer ID (SHA-256
// of its bytes, as go-libp2p-kbucket's ConvertKey and ConvertPeerID).
func kadPoint(b []byte) [32]byte { return sha256.Sum256(b) }

// kadFrac is the XOR distance of a and b as a fraction of the keyspace,
// from its top 64 bits.
func kadFrac(a, b [32]byte) float64 {
	x := binary.BigEndian.Uint64(a[:8]) ^ binary.BigEndian.Uint64(b[:8])
	return math.Ldexp(float64(x), -64)
}

// commonPrefixLen is the number of leading bits a and b share.
func commonPrefixLen(a, b [32]byte) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			n := 0
			for x&0x80 == 0 {
				x <<= 1
				n++
			}
			return 8*i + n
		}
	}
	return 256
}

// poissonTail returns P(X >= j) for X ~ Poisson(lambda).
func poissonTail(lambda float64, j int) float64 { return math.Exp(logPoissonTail(lambda, j)) }

// logPoissonTail returns ln P(X >= j) for X ~ Poisson(lambda), finite
// however small the tail, -Inf only for lambda == 0.
func logPoissonTail(lambda float64, j int) float64 {
	if j <= 0 {
		return 0
	}
	if lambda <= 0 {
		return math.Inf(-1)
	}
	if lambda >= float64(j) {
		head, term := 0.0, math.Exp(-lambda)
		for i := 0; i < j; i++ {
			head += term
			term *= lambda / float64(i+1)
		}
		return math.Log(max(1-head, math.SmallestNonzeroFloat64))
	}
	// ln of the first term, plus ln of the series of the following terms
	// relative to it (1 + λ/(j+1) + λ²/((j+1)(j+2)) + …, below j/(j-λ)).
	lg, _ := math.Lgamma(float64(j + 1))
	sum, r := 1.0, 1.0
	for i := j + 1; r > 1e-15 && i < j+1000; i++ {
		r *= lambda / float64(i)
		sum += r
	}
	return -lambda + float64(j)*math.Log(lambda) - lg + math.Log(sum)
}

// suspiciousPrefix returns how many of the peers at sorted distances xs
// (fractions of the keyspace, closest first) are closer than a network of
// n random IDs explains: the j with the smallest P(Poisson(n·x_j) >= j),
// if that is below censorAlpha, else 0. The smallest, not the last j below
// censorAlpha: behind 20 ground IDs the first honest peers are also "too
// many within their distance", but far less so than the ground ones.
// Distances count from 2^-64, the resolution of kadFrac.
func suspiciousPrefix(xs []float64, n float64) int {
	m, best := 0, math.Log(censorAlpha)
	for j, x := range xs {
		if lp := logPoissonTail(n*max(x, 0x1p-64), j+1); lp < best {
			m, best = j+1, lp
		}
	}
	return m
}

// sizeFromClosest estimates the number of DHT servers from the sorted
// distances of the peers closest to a random point: the k-th of them is
// at about k/N, so N ≈ (k-1)/x_k (at least the peers seen).
func sizeFromClosest(xs []float64) float64 {
	k := len(xs)
	if k < 2 || xs[k-1] <= 0 {
		return float64(k)
	}
	return max(float64(k-1)/xs[k-1], float64(k))
}

// sortedByDistance returns ids sorted by XOR distance to target, and the
// distances.
func sortedByDistance(target [32]byte, ids []peer.ID) ([]peer.ID, []float64) {
	type pd struct {
		p peer.ID
		x [32]byte
	}
	l := make([]pd, 0, len(ids))
	for _, p := range ids {
		pt := kadPoint([]byte(p))
		var x [32]byte
		for i := range x {
			x[i] = pt[i] ^ target[i]
		}
		l = append(l, pd{p, x})
	}
	slices.SortFunc(l, func(a, b pd) int {
		for i := range a.x {
			if a.x[i] != b.x[i] {
				return int(a.x[i]) - int(b.x[i])
			}
		}
		return 0
	})
	out := make([]peer.ID, len(l))
	xs := make([]float64, len(l))
	for i, e := range l {
		out[i] = e.p
		xs[i] = kadFrac(target, kadPoint([]byte(e.p)))
	}
	return out, xs
}

// censorGuard holds a node's network-size estimate.
type censorGuard struct {
	mu   sync.Mutex // held across the estimating lookup, so callers share one
	size float64
	at   time.Time
	// off disables the check (tests measure the attack without it).
	off atomic.Bool
	// flagged counts keys found captured (tests read it); warned is when
	// each key was last logged at warning level. Both guarded by s.mu;
	// warned holds at most maxCensorWarned keys.
	flagged int
	warned  map[string]time.Time
}

// networkSize returns the cached estimate of the number of DHT servers,
// measuring it when older than sizeEstimateTTL: sizeWalks closest-peers
// walks to independent random points, each estimating the size, and the
// smallest of those. One walk is not enough: a point that happens to fall
// near a cluster of ground IDs (ground for some key close to it) sees
// twenty peers far closer than the network's size explains and inflates
// the estimate, up to a hundredfold, which turns the check off for every
// key until the estimate expires. Clusters only ever inflate an estimate,
// and an estimate too low costs only extra queries (a false alarm), so
// the smallest is the robust choice. 0 means unknown.
func (s *Service) networkSize(ctx context.Context, d *dht.IpfsDHT) float64 {
	g := &s.censor
	g.mu.Lock()
	defer g.mu.Unlock()
	now := s.cfg.Now()
	if g.size > 0 && now.Sub(g.at) < sizeEstimateTTL {
		return g.size
	}
	walks := make(chan []float64, sizeWalks)
	for range sizeWalks {
		go func() {
			var r [32]byte
			if _, err := crand.Read(r[:]); err != nil {
				walks <- nil
				return
			}
			cctx, cancel := context.WithTimeout(ctx, closestTimeout)
			closest, _ := d.GetClosestPeers(cctx, string(r[:]))
			cancel()
			_, xs := sortedByDistance(kadPoint(r[:]), closest)
			walks <- xs
		}()
	}
	var ests []float64
	for range sizeWalks {
		ests = append(ests, estimateFromWalk(<-walks))
	}
	size := smallestSize(ests, float64(d.RoutingTable().Size()))
	if size <= 0 {
		return 0
	}
	g.size, g.at = size, now
	return g.size
}

// estimateFromWalk is the size estimate of one walk's sorted distances, 0
// when it reached too few peers to say.
func estimateFromWalk(xs []float64) float64 {
	if len(xs) < 4 {
		return 0
	}
	return sizeFromClosest(xs)
}

// smallestSize returns the smallest of the walks' estimates (ignoring
// walks that said nothing, 0), at least floor: the routing table's size,
// so that walks that reached only a few peers do not make the network
// look tiny.
func smallestSize(ests []float64, floor float64) float64 {
	best := 0.0
	for _, e := range ests {
		if e > 0 && (best == 0 || e < best) {
			best = e
		}
	}
	return max(best, floor)
}

// beyondCaptured checks the closest peers of provider key k (from a DHT
// walk) for ground IDs. If the key looks captured it walks on toward the
// key through the peers beyond the suspicious ones and returns the
// censorRegion closest peers past them; otherwise nil.
func (s *Service) beyondCaptured(ctx context.Context, d *dht.IpfsDHT, k mh.Multihash, closest []peer.ID) []peer.ID {
	if s.censor.off.Load() || len(closest) == 0 {
		return nil
	}
	n := s.networkSize(ctx, d)
	if n <= 0 {
		return nil
	}
	target := kadPoint(k)
	known, xs := sortedByDistance(target, closest)
	m := suspiciousPrefix(xs, censorSizeSafety*n)
	if m == 0 {
		return nil
	}
	now := s.cfg.Now()
	s.mu.Lock()
	s.censor.flagged++
	warn := now.Sub(s.censor.warned[string(k)]) >= censorWarnEvery
	if warn {
		if s.censor.warned == nil || len(s.censor.warned) >= maxCensorWarned {
			s.censor.warned = map[string]time.Time{}
		}
		s.censor.warned[string(k)] = now
	}
	s.mu.Unlock()
	lvl := slog.LevelDebug
	if warn {
		lvl = slog.LevelWarn
	}
	s.log.Log(ctx, lvl, "provider key looks captured: its closest DHT servers are closer than the network size explains; using the servers beyond them",
		"key", k.B58String(), "suspicious", m, "closest", len(known), "network_size", int(n),
		"closest_cpl", commonPrefixLen(target, kadPoint([]byte(known[0]))))
	pm, err := dhtpb.NewProtocolMessenger(d.MessageSender())
	if err != nil {
		return nil
	}
	seen := map[peer.ID]bool{s.h.ID(): true}
	for _, p := range known {
		seen[p] = true
	}
	for _, p := range d.RoutingTable().NearestPeers(target[:], censorRegion+m) {
		if !seen[p] {
			seen[p] = true
			known = append(known, p)
		}
	}
	asked := map[peer.ID]bool{}
	for round := 0; round < censorWalkRounds; round++ {
		known, xs = sortedByDistance(target, known)
		m = suspiciousPrefix(xs, censorSizeSafety*n)
		var ask []peer.ID
		for _, p := range known[m:] {
			if !asked[p] && len(ask) < censorWalkWidth {
				ask = append(ask, p)
				asked[p] = true
			}
		}
		if len(ask) == 0 {
			break
		}
		got := make(chan []*peer.AddrInfo, len(ask))
		for _, p := range ask {
			go func() {
				rctx, cancel := context.WithTimeout(ctx, responderTimeout)
				defer cancel()
				l, _ := pm.GetClosestPeers(rctx, p, peer.ID(k))
				got <- l
			}()
		}
		for range ask {
			for _, ai := range <-got {
				if ai == nil || seen[ai.ID] || len(known) >= 4*censorRegion+m {
					continue
				}
				seen[ai.ID] = true
				s.h.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
				known = append(known, ai.ID)
			}
		}
	}
	known, xs = sortedByDistance(target, known)
	m = suspiciousPrefix(xs, censorSizeSafety*n)
	return slices.Clone(known[m:min(len(known), m+censorRegion)])
}

// provideBeyond puts our provider record for k with the servers beyond a
// captured key's suspicious ones too (nothing if k does not look captured).
func (s *Service) provideBeyond(ctx context.Context, d *dht.IpfsDHT, k mh.Multihash) {
	if s.censor.off.Load() {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, closestTimeout)
	closest, _ := d.GetClosestPeers(cctx, string(k))
	cancel()
	region := s.beyondCaptured(ctx, d, k, closest)
	if len(region) == 0 {
		return
	}
	pm, err := dhtpb.NewProtocolMessenger(d.MessageSender())
	if err != nil {
		return
	}
	self := peer.AddrInfo{ID: s.h.ID(), Addrs: s.h.Addrs()}
	var wg sync.WaitGroup
	for _, p := range region {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, responderTimeout)
			defer cancel()
			if err := pm.PutProviderAddrs(rctx, p, k, self); err != nil {
				s.log.Debug("provider record beyond a captured key not stored", "peer", p, "err", err)
			}
		}()
	}
	wg.Wait()
}
