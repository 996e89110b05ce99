package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/circuit/pool"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/mempool"
	"github.com/co-infuse/co-infuse/proxy"
)

// OutboxFile is the client's mempool outbox inside the data directory.
const OutboxFile = "mempool-outbox.db"

// startDelivery runs the mempool role: BEGIN service mempool (target
// mempool.Target) is served by a mempool.Server that hands transactions to
// this node's own bitcoind or btcd (mempool.backend). The stream is
// metered and charged by the payment ledger like any other.
func startDelivery(n *Node, mux *circuit.Mux) (io.Closer, error) {
	b, err := mempool.NewBackend(n.cfg.Mempool.Backend)
	if err != nil {
		return nil, fieldErr("mempool.backend", "%v", err)
	}
	srv, err := mempool.NewServer(mempool.ServerConfig{Submit: b.Submit, Lookup: b.Lookup, Logger: n.log})
	if err != nil {
		b.Close()
		return nil, err
	}
	want, err := cell.ParseTarget(mempool.Target)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("mempool target: %w", err) // unreachable: a constant
	}
	accept := func(req circuit.BeginRequest) error {
		if req.Target != want {
			return fmt.Errorf("mempool: %w", circuit.ErrServiceNotOffered)
		}
		return nil
	}
	if err := mux.HandleServe(cell.ServiceMempool, accept, func(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
		srv.ServeConn(ctx, conn, n.origin(req.Peer))
	}); err != nil {
		b.Close()
		return nil, err
	}
	n.delivery = srv
	return b, nil
}

// origin is what this node sees of a stream's sender: the previous hop
// and the remote addresses of its links to it.
func (n *Node) origin(p peer.ID) mempool.Origin {
	o := mempool.Origin{Peer: p.String()}
	for _, c := range n.host.Network().ConnsToPeer(p) {
		o.Addrs = append(o.Addrs, c.RemoteMultiaddr().String())
	}
	return o
}

// DeliveryStats reports what this node's mempool role did and which
// previous hops it saw; ok is false without the role.
func (n *Node) DeliveryStats() (mempool.ServerStats, bool) {
	if n.delivery == nil {
		return mempool.ServerStats{}, false
	}
	return n.delivery.Stats(), true
}

// startMempoolClient opens the outbox and starts the mempool client, whose
// every delivery and echo query goes over a circuit of its own
// (dialDelivery).
func (n *Node) startMempoolClient() error {
	if err := n.openMempoolClient(n.dialDelivery); err != nil {
		return err
	}
	n.refillDelivery()
	return nil
}

// openMempoolClient starts the mempool client of the mempool section with
// dial as its Dial (dialDelivery, or a test's) and sets n.mempool.
func (n *Node) openMempoolClient(dial func(context.Context, mempool.Avoid) (mempool.Delivery, error)) error {
	c, err := mempool.NewClient(mempool.ClientConfig{
		Dial:        dial,
		OutboxPath:  filepath.Join(n.cfg.DataDir, OutboxFile),
		MaxQueued:   n.cfg.Mempool.MaxQueued,
		VerdictWait: n.cfg.Mempool.VerdictWait,
		GiveUpAfter: n.cfg.Mempool.GiveUpAfter,
		MaxAttempts: n.cfg.Mempool.MaxAttempts,
		Logger:      n.log,
	})
	if err != nil {
		return err
	}
	if err := c.Start(); err != nil {
		c.Close()
		return err
	}
	n.mempool = c
	return nil
}

// Mempool is the node's mempool client, or nil when it is off.
func (n *Node) Mempool() *mempool.Client { return n.mempool }

// maxDeliverySelect bounds path selections for one delivery stream when
// chosen nodes sit in a network to avoid.
const maxDeliverySelect = 8

// Pre-built delivery circuits: built ahead so that a broadcast does not
// wait for a circuit build, yet each used for one request only and never
// for anything else (Tor's preemptive circuits, with isolation of one).
const (
	// deliveryReady is how many unused delivery circuits are kept built:
	// a round's two SUBMITs take two, so four serve two broadcasts back
	// to back while their replacements are built.
	deliveryReady = 4
	// deliveryReadyMaxAge retires an unused one, so that no circuit sits
	// idle long before it carries a transaction.
	deliveryReadyMaxAge = 10 * time.Minute
)

// readyCircuit is a pre-built, never used circuit to a delivery node,
// with its stream opened ahead (s, nil until opened).
type readyCircuit struct {
	c      *circuit.Circuit
	s      net.Conn
	opened time.Time
	node   peer.ID
	group  string // network group of the delivery node, "" when relaxed
	built  time.Time
}

// deliveryPool holds pre-built delivery circuits; n.wg owns its builders.
type deliveryPool struct {
	mu       sync.Mutex
	ready    []readyCircuit // guarded by mu
	building int            // guarded by mu: builders running
	pending  []peer.ID      // guarded by mu: delivery nodes builders are building to
	timer    *time.Timer    // guarded by mu: a deferred refill (deliveryUsed), or nil
}

// dialDelivery is mempool.ClientConfig.Dial: for a SUBMIT stream (Urgent)
// it takes a pre-built circuit whose last hop avoid allows; otherwise, or
// with none that fits, it builds one: a path from discovery whose last hop
// plays the mempool role and is neither a node nor (unless
// discovery.allow_same_network) in a network of avoid, prepaid like any
// circuit. Either way the circuit is new, carries this one stream and
// nothing else, and is destroyed when the returned Conn closes; closing
// it also refills the pool (deliveryUsed: after a random delay unless the
// pool is short of a round's circuits), so that replacements are built
// after the request's answer, not while it is on its way.
func (n *Node) dialDelivery(ctx context.Context, avoid mempool.Avoid) (mempool.Delivery, error) {
	var r readyCircuit
	err := errNoReady
	if avoid.Urgent {
		r, err = n.takeReady(avoid)
	}
	ready := err == nil
	if err != nil {
		if avoid.Urgent {
			n.refillDelivery() // short of circuits: build more now
		}
		if r, err = n.buildDeliveryCircuit(ctx, avoid, nil); err != nil {
			return mempool.Delivery{}, err
		}
	}
	if r.s == nil || time.Since(r.opened) > readyStreamFresh {
		if r.s != nil {
			r.s.Close()
		}
		if err := n.openDeliveryStream(ctx, &r); err != nil {
			r.c.Close()
			n.deliveryUsed()
			return mempool.Delivery{}, err
		}
	}
	conn := &circuitConn{Conn: r.s, c: r.c, closed: n.deliveryUsed}
	return mempool.Delivery{Conn: conn, Node: r.node.String(), Network: r.group, Ready: ready}, nil
}

// readyStreamFresh is how long a pre-opened delivery stream is used: well
// inside the delivery node's wait for the first request
// (mempool.DefaultReadTimeout), after which it closes the stream.
const readyStreamFresh = 20 * time.Second

// openDeliveryStream opens the BEGIN service mempool stream on r's circuit.
func (n *Node) openDeliveryStream(ctx context.Context, r *readyCircuit) error {
	target, err := cell.ParseTarget(mempool.Target)
	if err != nil {
		return err // unreachable: a constant
	}
	s, err := r.c.Dial(ctx, cell.ServiceMempool, target)
	if err != nil {
		return fmt.Errorf("open delivery stream: %w", err)
	}
	r.s, r.opened = n.paidCircuit(r.c).Wrap(s), time.Now()
	return nil
}

// errNoReady: no pre-built delivery circuit fits.
var errNoReady = errors.New("no pre-built delivery circuit fits")

// takeReady removes and returns a live pre-built circuit that avoid
// allows, dropping dead and old ones on the way.
func (n *Node) takeReady(avoid mempool.Avoid) (readyCircuit, error) {
	p := &n.deliveryPool
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.ready[:0]
	var out *readyCircuit
	for _, r := range p.ready {
		if r.c.Err() != nil || time.Since(r.built) > deliveryReadyMaxAge {
			r.c.Close()
			continue
		}
		if out == nil && !slices.Contains(avoid.Nodes, r.node.String()) && (r.group == "" || !slices.Contains(avoid.Networks, r.group)) {
			out = &r
			continue
		}
		kept = append(kept, r)
	}
	clear(p.ready[len(kept):])
	p.ready = kept
	if out == nil {
		return readyCircuit{}, errNoReady
	}
	return *out, nil
}

// refillDelivery starts one builder per missing pre-built circuit (up to
// deliveryReady in all, built in parallel), each preferring a delivery
// node that no ready or pending circuit goes to, so that a round's two
// copies find circuits to two different nodes. A failed build ends its
// builder; the next dial or close starts another.
func (n *Node) refillDelivery() {
	p := &n.deliveryPool
	p.mu.Lock()
	want := deliveryReady - len(p.ready) - p.building
	if want <= 0 || n.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.building += want
	n.wg.Add(want)
	p.mu.Unlock()
	for range want {
		go func() {
			defer n.wg.Done()
			n.buildReady()
		}()
	}
}

// buildReady builds one pre-built circuit with its stream open and adds
// it to the pool (or closes it if the node stops meanwhile).
func (n *Node) buildReady() {
	p := &n.deliveryPool
	var mine peer.ID    // guarded by p.mu: the node this builder claimed
	unclaim := func() { // with p.mu held
		if i := slices.Index(p.pending, mine); mine != "" && i >= 0 {
			p.pending = slices.Delete(p.pending, i, i+1)
		}
		mine = ""
	}
	claim := func(id peer.ID) {
		p.mu.Lock()
		defer p.mu.Unlock()
		unclaim()
		p.pending = append(p.pending, id)
		mine = id
	}
	p.mu.Lock()
	var have []string
	for _, r := range p.ready {
		have = append(have, r.node.String())
	}
	for _, id := range p.pending {
		have = append(have, id.String())
	}
	p.mu.Unlock()
	r, err := n.buildDeliveryCircuit(n.ctx, mempool.Avoid{Nodes: have}, claim)
	if errors.Is(err, mempool.ErrNoDeliveryNode) && len(have) > 0 {
		r, err = n.buildDeliveryCircuit(n.ctx, mempool.Avoid{}, claim)
	}
	if err == nil {
		if err = n.openDeliveryStream(n.ctx, &r); err != nil {
			r.c.Close()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.building--
	unclaim()
	if err != nil {
		n.log.Debug("pre-building a delivery circuit failed", "err", err)
		return
	}
	if n.ctx.Err() != nil {
		r.c.Close() // closeDeliveryPool may have run
		return
	}
	p.ready = append(p.ready, r)
}

// Replacing used delivery circuits. A delivery node is the last hop of
// the circuits built to it, so it sees when each is built. Replacements
// built as soon as a transaction's circuits close would tell it: this new
// circuit (and the transaction it will carry) is probably of the wallet
// whose transaction's stream closed a moment ago, here or at a delivery
// node of the same operator, linking a wallet's transactions on a network
// with few broadcasts. So while the pool still holds a round's two
// circuits, replacements wait a random delay (exponential, mean
// deliveryRefillMean, within [deliveryRefillMin, 4 × the mean]); only a
// pool short of a round's circuits (a burst of broadcasts) refills at
// once, when the next broadcast would otherwise build its own.
const (
	deliveryRefillMean = 30 * time.Second
	deliveryRefillMin  = 2 * time.Second
	// deliveryRoundCircuits is what one round's two SUBMITs take.
	deliveryRoundCircuits = 2
)

// deliveryRefillDelay draws the delay before a deferred refill.
func deliveryRefillDelay() time.Duration {
	d := time.Duration(mrand.ExpFloat64() * float64(deliveryRefillMean))
	return min(max(d, deliveryRefillMin), 4*deliveryRefillMean)
}

// deliveryUsed is called when a delivery circuit closes or fails: it
// refills the pool at once if fewer than a round's circuits are ready or
// being built, else once, after deliveryRefillDelay (one timer at a time,
// owned by n.wg; closeDeliveryPool stops it).
func (n *Node) deliveryUsed() {
	p := &n.deliveryPool
	p.mu.Lock()
	if len(p.ready)+p.building < deliveryRoundCircuits {
		p.mu.Unlock()
		n.refillDelivery()
		return
	}
	defer p.mu.Unlock()
	if p.timer != nil || n.ctx.Err() != nil {
		return
	}
	n.wg.Add(1)
	p.timer = time.AfterFunc(deliveryRefillDelay(), func() {
		defer n.wg.Done()
		p.mu.Lock()
		p.timer = nil
		p.mu.Unlock()
		n.refillDelivery()
	})
}

// closeDeliveryPool destroys the unused pre-built circuits and stops a
// deferred refill.
func (n *Node) closeDeliveryPool() {
	p := &n.deliveryPool
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.timer != nil && p.timer.Stop() {
		n.wg.Done() // its function will not run
	}
	p.timer = nil
	for _, r := range p.ready {
		r.c.Close()
	}
	p.ready = nil
}

// buildDeliveryCircuit selects a path to a delivery node avoid allows,
// builds the circuit and prepays it. claim, if not nil, learns the
// delivery node once it is chosen, before the build.
func (n *Node) buildDeliveryCircuit(ctx context.Context, avoid mempool.Avoid, claim func(peer.ID)) (readyCircuit, error) {
	var exclude []peer.ID
	for _, s := range avoid.Nodes {
		if id, err := peer.Decode(s); err == nil {
			exclude = append(exclude, id)
		}
	}
	for range maxDeliverySelect {
		ads, err := n.disc.SelectPath(ctx, discovery.PathRequest{
			Hops:        n.cfg.Circuit.Hops,
			Final:       discovery.RoleMempool,
			MaxPriceSat: n.cfg.Discovery.MaxPriceSatPerMB,
			Exclude:     exclude,
		})
		if err != nil {
			if errors.Is(err, discovery.ErrNoPath) {
				return readyCircuit{}, fmt.Errorf("%w: %w", mempool.ErrNoDeliveryNode, err)
			}
			return readyCircuit{}, err
		}
		final := ads[len(ads)-1]
		group := ""
		if !n.cfg.Discovery.AllowSameNetwork {
			group = networkOf(final.Addrs)
			if group != "" && slices.Contains(avoid.Networks, group) {
				exclude = append(exclude, final.Peer)
				continue
			}
		}
		if claim != nil {
			claim(final.Peer)
			claim = nil
		}
		hops := make([]circuit.HopInfo, len(ads))
		for i, ad := range ads {
			hops[i] = circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
		}
		pp := paidPath{ads: ads, final: discovery.RoleMempool}
		if err := n.attachPrepay(hops, &pp, false); err != nil {
			return readyCircuit{}, fmt.Errorf("build delivery circuit: %w", err)
		}
		bctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.BuildTimeout)
		c, err := n.engine.Build(bctx, hops)
		cancel()
		if err != nil {
			return readyCircuit{}, fmt.Errorf("build delivery circuit: %w", err)
		}
		if err := n.prepare(ctx, c, pool.Path{Hops: hops, Meta: pp}); err != nil {
			c.Close()
			return readyCircuit{}, err
		}
		return readyCircuit{c: c, node: final.Peer, group: group, built: time.Now()}, nil
	}
	return readyCircuit{}, fmt.Errorf("%w: every candidate is in a network to avoid", mempool.ErrNoDeliveryNode)
}

// circuitConn is a stream whose Close also destroys its circuit and then
// calls closed (if not nil) once.
type circuitConn struct {
	net.Conn
	c      *circuit.Circuit
	closed func()
	once   sync.Once
}

func (cc *circuitConn) Close() error {
	err := cc.Conn.Close()
	cc.once.Do(func() {
		cc.c.Close()
		if cc.closed != nil {
			cc.closed()
		}
	})
	return err
}

// networkOf is the network group (IPv4 /16, IPv6 /32) of the first IP
// address in addrs, "" if none: discovery's one-hop-per-network rule,
// applied to the two delivery nodes of one transaction.
func networkOf(addrs []ma.Multiaddr) string {
	for _, a := range addrs {
		for _, c := range a {
			if c.Code() != ma.P_IP4 && c.Code() != ma.P_IP6 {
				continue
			}
			ip, ok := netip.AddrFromSlice(c.RawValue())
			if !ok {
				continue
			}
			ip = ip.Unmap()
			bits := 32
			if ip.Is4() {
				bits = 16
			}
			if p, err := ip.Prefix(bits); err == nil {
				return p.String()
			}
		}
	}
	return ""
}

// startRPC opens the bitcoind-compatible JSON-RPC port (mempool.rpc) and
// hands it the mempool client's Broadcast, status and abort, and the
// upstream node for pass-through.
func (n *Node) startRPC() (err error) {
	rc := n.cfg.Mempool.RPC
	cookie := rc.Cookie
	if !filepath.IsAbs(cookie) {
		cookie = filepath.Join(n.cfg.DataDir, cookie)
	}
	pcfg := proxy.RPCConfig{
		User:          rc.User,
		Password:      rc.Password,
		CookiePath:    cookie,
		Broadcast:     n.mempool.Broadcast,
		BroadcastInfo: n.broadcastInfo,
		Abort:         n.abortBroadcast,
		Logger:        n.log,
	}
	if rc.Upstream != "" {
		pcfg.Upstream = &proxy.RPCUpstream{URL: rc.Upstream, User: rc.UpstreamUser, Password: rc.UpstreamPassword, CookiePath: rc.UpstreamCookie}
		pcfg.ForwardWalletSends = rc.ForwardWalletSends
	}
	if n.rpc, err = proxy.NewRPC(pcfg); err != nil {
		return fmt.Errorf("mempool.rpc: %w", err)
	}
	if n.rpcLn, err = net.Listen("tcp", rc.Listen); err != nil {
		return fmt.Errorf("mempool.rpc.listen %s: %w (is bitcoind or another co-infuse using it? set mempool.rpc.listen)", rc.Listen, err)
	}
	n.serve("rpc", func() error { return n.rpc.Serve(n.rpcLn) })
	return nil
}

// RPCAddr is the JSON-RPC port's address, or nil when it is off.
func (n *Node) RPCAddr() net.Addr {
	if n.rpcLn == nil {
		return nil
	}
	return n.rpcLn.Addr()
}

// RPCCookie is the JSON-RPC port's cookie file, or "" when it is off.
func (n *Node) RPCCookie() string {
	if n.rpc == nil {
		return ""
	}
	return n.rpc.CookiePath()
}

// BroadcastEntry is one queued transaction in getprivatebroadcastinfo:
// bitcoind v31's fields (txid, wtxid, hex, peers) and co-infuse's own.
// peers lists the delivery nodes that accepted it, by peer ID (never an
// address) and without times, which the outbox does not record.
type BroadcastEntry struct {
	proxy.PrivateBroadcastTx
	// TimeAdded is when sendrawtransaction took it, in Unix seconds.
	TimeAdded int64 `json:"time_added"`
	// Attempts counts delivery and echo rounds.
	Attempts int `json:"attempts"`
	// LastError is the last round's failure, if any; for a transaction
	// given up, why.
	LastError string `json:"last_error,omitempty"`
	// GivenUp marks a transaction the client stopped trying (age or
	// round limit, mempool.give_up_after and mempool.max_attempts); it is
	// listed until abortprivatebroadcast or a new sendrawtransaction of it.
	GivenUp bool `json:"given_up"`
	// GivenUpTime is when, in Unix seconds (0 while queued).
	GivenUpTime int64 `json:"given_up_time,omitempty"`
}

// BroadcastInfo is getprivatebroadcastinfo's result.
type BroadcastInfo struct {
	Transactions []BroadcastEntry `json:"transactions"`
}

func (n *Node) broadcastInfo(context.Context) (any, error) {
	es, err := n.mempool.Queued()
	if err != nil {
		return nil, err
	}
	gs, err := n.mempool.GivenUp()
	if err != nil {
		return nil, err
	}
	info := BroadcastInfo{Transactions: []BroadcastEntry{}}
	for _, e := range append(es, gs...) {
		tx := proxy.PrivateBroadcastTx{TxID: e.TxID, WTxID: e.TxID, Hex: hex.EncodeToString(e.Raw), Peers: []proxy.PrivateBroadcastPeer{}}
		if t, err := mempool.CheckRawTx(e.Raw); err == nil {
			tx.WTxID = t.WTxID
		}
		for _, p := range e.AcceptedBy {
			tx.Peers = append(tx.Peers, proxy.PrivateBroadcastPeer{Address: p})
		}
		be := BroadcastEntry{
			PrivateBroadcastTx: tx, TimeAdded: e.Added.Unix(), Attempts: e.Attempts, LastError: e.LastError,
		}
		if !e.GaveUp.IsZero() {
			be.GivenUp, be.GivenUpTime = true, e.GaveUp.Unix()
		}
		info.Transactions = append(info.Transactions, be)
	}
	return info, nil
}

// abortBroadcast is abortprivatebroadcast: id is a txid or wtxid.
func (n *Node) abortBroadcast(_ context.Context, id string) (any, error) {
	e, err := n.mempool.AbortID(id)
	if err != nil {
		if errors.Is(err, mempool.ErrUnknownTx) {
			return nil, &proxy.RPCError{Code: proxy.RPCInvalidAddressOrKey, Message: "Transaction not in private broadcast queue"}
		}
		return nil, err
	}
	rm := proxy.RemovedBroadcastTx{TxID: e.TxID, WTxID: e.TxID, Hex: hex.EncodeToString(e.Raw)}
	if t, err := mempool.CheckRawTx(e.Raw); err == nil {
		rm.WTxID = t.WTxID
	}
	return proxy.AbortedBroadcast{RemovedTransactions: []proxy.RemovedBroadcastTx{rm}}, nil
}
