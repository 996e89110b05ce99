package discovery

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
	ma "github.com/multiformats/go-multiaddr"
)

// closestOf returns the k smallest of n uniform distances (XOR distances
// of n random IDs to any point are uniform on the keyspace).
func closestOf(rng *rand.Rand, n, k int) []float64 {
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = rng.Float64()
	}
	slices.Sort(xs)
	return xs[:k]
}

// TestCensorStatistic: over 2,000 honest networks of 1,000 and 10,000
// DHT servers the ground-ID test raises no alarm (estimating the size as
// the smallest of sizeWalks random points' estimates, as the Service does); it flags captures
// by IDs ground 8 bits deeper than the network's size (99.5%, cut within
// one peer of the 20 ground ones) and five ground IDs in front of honest
// ones (exactly the five, 99%); the cheapest capture, 20 IDs just closer
// than the closest honest server, is flagged in at least 90% of keys
// (missed where the honest servers happen to sit far from the key).
func TestCensorStatistic(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(14, 14))
	for _, n := range []int{1000, 10000} {
		const trials = 2000
		var alarms, cheapCaught, deepCaught, partCaught int
		for i := 0; i < trials; i++ {
			var ests []float64
			for range sizeWalks {
				ests = append(ests, estimateFromWalk(closestOf(rng, n, 20)))
			}
			est := smallestSize(ests, 0)
			honest := closestOf(rng, n, 20)
			if suspiciousPrefix(honest, censorSizeSafety*est) > 0 {
				alarms++
			}
			// Cheapest capture: 20 ground IDs between the key and the
			// closest honest server.
			cheap := make([]float64, 0, 40)
			for j := 0; j < 20; j++ {
				cheap = append(cheap, rng.Float64()*honest[0])
			}
			cheap = append(cheap, honest...)
			slices.Sort(cheap)
			if m := suspiciousPrefix(cheap[:40], censorSizeSafety*est); m >= 15 {
				cheapCaught++
			}
			// Ground with a common prefix of log2(n)+8 bits, the usual
			// grinding depth.
			deep := make([]float64, 0, 40)
			lim := math.Ldexp(1, -(int(math.Log2(float64(n))) + 8))
			for j := 0; j < 20; j++ {
				deep = append(deep, rng.Float64()*lim)
			}
			deep = append(deep, honest...)
			slices.Sort(deep)
			if m := suspiciousPrefix(deep[:40], censorSizeSafety*est); m >= 19 && m <= 21 {
				deepCaught++
			}
			// Five ground IDs in front of honest ones: the five, and no
			// honest server, are suspicious.
			part := append(slices.Clone(deep[:5]), honest[:15]...)
			if m := suspiciousPrefix(part, censorSizeSafety*est); m == 5 {
				partCaught++
			}
		}
		t.Logf("N=%d: %d false alarms in %d honest lookups; captures flagged: cheapest %d/%d, deep (cut within 1) %d/%d, 5 ground IDs exactly %d/%d",
			n, alarms, trials, cheapCaught, trials, deepCaught, trials, partCaught, trials)
		if alarms > 2 {
			t.Errorf("N=%d: %d false alarms in %d", n, alarms, trials)
		}
		if cheapCaught < trials*9/10 || deepCaught < trials*995/1000 || partCaught < trials*99/100 {
			t.Errorf("N=%d: captures missed", n)
		}
	}
	// Grinding far deeper than needed is still cut at the ground IDs,
	// even past float underflow and the 64 bits of distance used.
	for _, x := range []float64{1e-60, 1e-200, 0} {
		xs := make([]float64, 0, 30)
		for j := 0; j < 20; j++ {
			xs = append(xs, x*float64(j))
		}
		xs = append(xs, closestOf(rng, 1000, 10)...)
		if m := suspiciousPrefix(xs, censorSizeSafety*1000); m != 20 {
			t.Errorf("ground at %g: cut after %d peers, want 20", x, m)
		}
	}
	if p := poissonTail(2, 1); math.Abs(p-(1-math.Exp(-2))) > 1e-12 {
		t.Fatalf("poissonTail(2,1) = %v", p)
	}
	if p := poissonTail(0.5, 3); math.Abs(p-(1-math.Exp(-0.5)*(1+0.5+0.125))) > 1e-12 {
		t.Fatalf("poissonTail(0.5,3) = %v", p)
	}
	if p := poissonTail(7, 3); math.Abs(p-(1-math.Exp(-7)*(1+7+24.5))) > 1e-12 {
		t.Fatalf("poissonTail(7,3) = %v", p)
	}
}

// groundKey grinds an Ed25519 key whose kad-dht position shares at least
// bits leading bits with target.
func groundKey(t testing.TB, target [32]byte, bits int) crypto.PrivKey {
	t.Helper()
	for {
		priv, _, err := crypto.GenerateEd25519Key(crand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		id, err := peer.IDFromPrivateKey(priv)
		if err != nil {
			t.Fatal(err)
		}
		if commonPrefixLen(kadPoint([]byte(id)), target) >= bits {
			return priv
		}
	}
}

// Minimal kad wire format (varint-delimited protobuf dht.pb.Message), enough
// for a censoring server: field 1 type, 2 key, 8 closer peers (Peer: 1 id,
// 2 addrs, 3 connection).
const (
	kadAddProvider  = 2
	kadGetProviders = 3
	kadFindNode     = 4
	kadPing         = 5
)

func pbVarint(b []byte, field int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(field<<3))
	return binary.AppendUvarint(b, v)
}

func pbBytes(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field<<3|2))
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// kadParse returns a message's type and key.
func kadParse(b []byte) (typ uint64, key []byte, ok bool) {
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, nil, false
		}
		b = b[n:]
		switch tag & 7 {
		case 0:
			v, n := binary.Uvarint(b)
			if n <= 0 {
				return 0, nil, false
			}
			b = b[n:]
			if tag>>3 == 1 {
				typ = v
			}
		case 2:
			l, n := binary.Uvarint(b)
			if n <= 0 || uint64(len(b)-n) < l {
				return 0, nil, false
			}
			if tag>>3 == 2 {
				key = b[n : n+int(l)]
			}
			b = b[n+int(l):]
		default:
			return 0, nil, false
		}
	}
	return typ, key, true
}

func kadReply(typ uint64, key []byte, closer []peer.AddrInfo) []byte {
	var m []byte
	if typ != 0 {
		m = pbVarint(m, 1, typ)
	}
	m = pbBytes(m, 2, key)
	for _, ai := range closer {
		var p []byte
		p = pbBytes(p, 1, []byte(ai.ID))
		for _, a := range ai.Addrs {
			p = pbBytes(p, 2, a.Bytes())
		}
		p = pbVarint(p, 3, 1) // CONNECTED
		m = pbBytes(m, 8, p)
	}
	return append(binary.AppendUvarint(nil, uint64(len(m))), m...)
}

// censoringKad is the attacker's DHT server: it answers every query with
// its fellow ground servers as the closest peers, never returns a provider
// record, and drops every ADD_PROVIDER.
func censoringKad(crew func() []peer.AddrInfo) network.StreamHandler {
	return func(st network.Stream) {
		defer st.Close()
		r := bufio.NewReader(st)
		for {
			n, err := binary.ReadUvarint(r)
			if err != nil || n > 64<<10 {
				st.Reset()
				return
			}
			buf := make([]byte, n)
			if _, err := io.ReadFull(r, buf); err != nil {
				st.Reset()
				return
			}
			typ, key, ok := kadParse(buf)
			if !ok {
				st.Reset()
				return
			}
			var out []byte
			switch typ {
			case kadAddProvider:
				continue // dropped: the censorship
			case kadPing:
				out = kadReply(typ, nil, nil)
			default: // FIND_NODE, GET_PROVIDERS (no providers), GET_VALUE
				out = kadReply(typ, key, crew())
			}
			if _, err := st.Write(out); err != nil {
				return
			}
		}
	}
}

// capturedNet is a mocknet of 16 honest DHT servers running discovery
// (real kad-dht) plus 20 censoring servers (censoringKad) whose IDs are
// ground to share 10 bits with key, in the honest routing tables.
func capturedNet(t *testing.T, ctx context.Context, key []byte) (mocknet.Mocknet, []*node) {
	t.Helper()
	mn, nodes := mocknetCluster(t, ctx, 16)
	target := kadPoint(key)

	var (
		crewMu sync.Mutex
		crew   []peer.AddrInfo
	)
	crewFn := func() []peer.AddrInfo {
		crewMu.Lock()
		defer crewMu.Unlock()
		return slices.Clone(crew)
	}
	// Ground IDs are ground to share more leading bits with the key than
	// any honest server does (10 at least), as an attacker would: one
	// honest server among the closest twenty would hold the record and
	// the attack would not censor.
	bits := 10
	for _, nd := range nodes {
		bits = max(bits, commonPrefixLen(kadPoint([]byte(nd.h.ID())), target)+1)
	}
	var ground []host.Host
	for i := 0; i < 20; i++ {
		h, err := mn.AddPeer(groundKey(t, target, bits), ma.StringCast(fmt.Sprintf("/ip4/10.66.0.%d/tcp/4001", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		h.SetStreamHandler(ProtocolPrefix+"/kad/1.0.0", censoringKad(crewFn))
		ground = append(ground, h)
		crewMu.Lock()
		crew = append(crew, peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()})
		crewMu.Unlock()
	}
	if err := mn.LinkAll(); err != nil {
		t.Fatal(err)
	}
	for _, g := range ground {
		for _, nd := range nodes {
			if err := g.Connect(ctx, nd.info()); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Wait until the honest servers route to the ground IDs.
	for {
		in := 0
		for _, nd := range nodes {
			d, _ := nd.s.running()
			for _, g := range ground {
				if d.RoutingTable().Find(g.ID()) != "" {
					in++
				}
			}
		}
		if in >= len(nodes)*len(ground)*3/4 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ground servers in %d of %d routing tables", in, len(nodes)*len(ground))
		case <-time.After(20 * time.Millisecond): // poll under ctx's deadline
		}
	}
	return mn, nodes
}

// TestCensorshipGroundIDs reproduces the content-censorship attack of
// Sridhar et al. (NDSS 2024) on a mocknet of 16 honest DHT servers running
// real kad-dht: 20 attacker servers with peer IDs ground to share 10 bits
// with the relay key (closer than any honest server), answering lookups
// but dropping provider records. Without the check a fresh client finds
// no relay; with it the providers also store their records beyond the
// ground IDs, the client asks there, and finds every relay.
func TestCensorshipGroundIDs(t *testing.T) {
	if testing.Short() {
		t.Skip("mocknet with ground IDs")
	}
	ctx := testCtx(t, 4*time.Minute)
	mn, nodes := capturedNet(t, ctx, roleKey(RoleRelay).Hash())
	want := map[peer.ID]bool{}
	for _, nd := range nodes {
		want[nd.h.ID()] = true
	}

	// Without the check: the attack works.
	for _, nd := range nodes {
		nd.s.censor.off.Store(true)
	}
	publishAll(t, ctx, nodes)
	before := freshMocknetClient(t, ctx, mn, nodes[0].info())
	before.censor.off.Store(true)
	got, err := before.Find(ctx, RoleRelay, 100)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("without the check a fresh client found %d of %d relays", len(got), len(want))
	if len(got) > 1 {
		t.Fatalf("the attack did not censor: %d relays found", len(got))
	}

	// With it: providers put records beyond the ground IDs, clients ask there.
	for _, nd := range nodes {
		nd.s.censor.off.Store(false)
	}
	for i, nd := range nodes {
		if err := nd.s.Publish(ctx, testAdvert(i, uint64(20+i))); err != nil {
			t.Fatal(err)
		}
	}
	after := freshMocknetClient(t, ctx, mn, nodes[0].info())
	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	found, err := findAll(fctx, after, RoleRelay, want)
	after.mu.Lock()
	flagged := after.censor.flagged
	after.mu.Unlock()
	t.Logf("with the check a fresh client found %d of %d relays (key flagged %d times)", len(found), len(want), flagged)
	if err != nil {
		t.Fatal(err)
	}
	if flagged == 0 {
		t.Fatal("the captured key was not flagged")
	}
	// An uncaptured key raises no alarm.
	after.mu.Lock()
	after.censor.flagged = 0
	after.mu.Unlock()
	if _, err := after.Find(ctx, RoleMempool, 100); err != nil {
		t.Fatal(err)
	}
	after.mu.Lock()
	flagged = after.censor.flagged
	after.mu.Unlock()
	if flagged != 0 {
		t.Fatalf("uncaptured mempool key flagged %d times", flagged)
	}
}

// TestCensorshipGroundIDsOnionIndex: the same attack on an onion-service
// descriptor index (whoever knows the onion address can compute it): an
// HSDir's ProvideIndex also stores beyond the ground IDs, and a fresh
// client's FindIndex finds it; without the check it finds nothing.
func TestCensorshipGroundIDsOnionIndex(t *testing.T) {
	if testing.Short() {
		t.Skip("mocknet with ground IDs")
	}
	ctx := testCtx(t, 4*time.Minute)
	var index [32]byte
	copy(index[:], "an onion service's index, period")
	mn, nodes := capturedNet(t, ctx, nameKey(hsIndexKey(index)).Hash())
	// Node 0 is a rendezvous node and the HSDir.
	hsdir := nodes[0]
	for _, nd := range nodes {
		nd.s.censor.off.Store(true)
	}
	publishAll(t, ctx, nodes)
	rv := testAdvert(0, 10)
	rv.Roles = append(rv.Roles, RoleRendezvous)
	rv.Prices[RoleRendezvous] = 10
	if err := hsdir.s.Publish(ctx, rv); err != nil {
		t.Fatal(err)
	}
	if err := hsdir.s.ProvideIndex(ctx, index); err != nil {
		t.Fatal(err)
	}
	before := freshMocknetClient(t, ctx, mn, nodes[1].info())
	before.censor.off.Store(true)
	got, err := before.FindIndex(ctx, index, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("the attack did not censor: %d holders found", len(got))
	}
	hsdir.s.censor.off.Store(false)
	if err := hsdir.s.ProvideIndex(ctx, index); err != nil {
		t.Fatal(err)
	}
	after := freshMocknetClient(t, ctx, mn, nodes[1].info())
	got, err = after.FindIndex(ctx, index, 10)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("holders of the captured index found: 0 without the check, %d with", len(got))
	if len(got) != 1 || got[0].Peer != hsdir.h.ID() {
		t.Fatalf("found %d holders, want the HSDir", len(got))
	}
}

// TestNetworkSizeSmallestOfWalks: in a small network where 20 ground IDs
// sit in one cluster (as in the ground-ID tests), a single walk to a random
// point that falls near the cluster overestimates the size, often more
// than fourfold, which would turn the capture check off; the smallest of
// sizeWalks walks does so in under half a percent of 20,000 estimates.
func TestNetworkSizeSmallestOfWalks(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(36, 20))
	const honest, grounded, trials = 16, 20, 20000
	n := float64(honest + grounded)
	walk := func(ids []uint64) []float64 {
		r := rng.Uint64()
		xs := make([]float64, len(ids))
		for i, id := range ids {
			xs[i] = math.Ldexp(float64(id^r), -64)
		}
		slices.Sort(xs)
		return xs[:20]
	}
	var singleOff, smallestOff int
	for i := 0; i < trials; i++ {
		ids := make([]uint64, 0, honest+grounded)
		for j := 0; j < honest; j++ {
			ids = append(ids, rng.Uint64())
		}
		key := rng.Uint64()
		for j := 0; j < grounded; j++ {
			ids = append(ids, key^(rng.Uint64()>>10)) // 10 bits in common
		}
		var ests []float64
		for range sizeWalks {
			ests = append(ests, estimateFromWalk(walk(ids)))
		}
		if ests[0] > 4*n {
			singleOff++
		}
		if smallestSize(ests, 0) > 4*n {
			smallestOff++
		}
	}
	t.Logf("N=%d with %d ground IDs in one cluster: estimates over 4x the size: one walk %d/%d, smallest of %d walks %d/%d",
		int(n), grounded, singleOff, trials, sizeWalks, smallestOff, trials)
	if singleOff < trials/20 {
		t.Fatalf("one walk overestimated only %d times: the cluster is not close enough to matter", singleOff)
	}
	if smallestOff > trials/200 {
		t.Fatalf("smallest of walks overestimated %d times in %d", smallestOff, trials)
	}
	if got := smallestSize([]float64{0, 0, 40}, 12); got != 40 {
		t.Fatalf("two failed walks: %v, want the one estimate 40", got)
	}
	if got := smallestSize([]float64{0, 0, 0}, 12); got != 12 {
		t.Fatalf("every walk failed: %v, want the routing-table floor 12", got)
	}
	if got := smallestSize([]float64{90, 50, 0}, 12); got != 50 {
		t.Fatalf("one failed walk: %v, want 50", got)
	}
}
