package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
	c, err := mempool.NewClient(mempool.ClientConfig{
		Dial:        n.dialDelivery,
		OutboxPath:  filepath.Join(n.cfg.DataDir, OutboxFile),
		MaxQueued:   n.cfg.Mempool.MaxQueued,
		VerdictWait: n.cfg.Mempool.VerdictWait,
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
	n.refillDelivery()
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
	// a round takes two (two delivery nodes) and an echo query one.
	deliveryReady = 3
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

// deliveryPool holds pre-built delivery circuits; n.wg owns its builder.
type deliveryPool struct {
	mu       sync.Mutex
	ready    []readyCircuit // guarded by mu
	building bool           // guarded by mu: a refill goroutine runs
}

// dialDelivery is mempool.ClientConfig.Dial: for an urgent stream it takes
// a pre-built circuit whose last hop avoid allows; otherwise, or with none
// that fits, it builds one: a path from discovery whose
// last hop plays the mempool role and is neither a node nor (unless
// discovery.allow_same_network) in a network of avoid, prepaid like any
// circuit. Either way the circuit is new, carries this one stream and
// nothing else, and is destroyed when the returned Conn closes.
func (n *Node) dialDelivery(ctx context.Context, avoid mempool.Avoid) (mempool.Delivery, error) {
	defer n.refillDelivery()
	var r readyCircuit
	err := errNoReady
	if avoid.Urgent {
		r, err = n.takeReady(avoid)
	}
	if err != nil {
		if r, err = n.buildDeliveryCircuit(ctx, avoid); err != nil {
			return mempool.Delivery{}, err
		}
	}
	if r.s == nil || time.Since(r.opened) > readyStreamFresh {
		if r.s != nil {
			r.s.Close()
		}
		if err := n.openDeliveryStream(ctx, &r); err != nil {
			r.c.Close()
			return mempool.Delivery{}, err
		}
	}
	conn := &circuitConn{Conn: r.s, c: r.c}
	return mempool.Delivery{Conn: conn, Node: r.node.String(), Network: r.group}, nil
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

// refillDelivery starts, unless one runs, a goroutine that builds
// delivery circuits until deliveryReady are ready, preferring delivery
// nodes none of them goes to. A failed build ends it; the next dial
// starts another.
func (n *Node) refillDelivery() {
	p := &n.deliveryPool
	p.mu.Lock()
	if p.building || len(p.ready) >= deliveryReady || n.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.building = true
	p.mu.Unlock()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() {
			p.mu.Lock()
			p.building = false
			p.mu.Unlock()
		}()
		for n.ctx.Err() == nil {
			p.mu.Lock()
			if len(p.ready) >= deliveryReady {
				p.mu.Unlock()
				return
			}
			var have []string
			for _, r := range p.ready {
				have = append(have, r.node.String())
			}
			p.mu.Unlock()
			r, err := n.buildDeliveryCircuit(n.ctx, mempool.Avoid{Nodes: have})
			if errors.Is(err, mempool.ErrNoDeliveryNode) && len(have) > 0 {
				r, err = n.buildDeliveryCircuit(n.ctx, mempool.Avoid{})
			}
			if err == nil {
				if err = n.openDeliveryStream(n.ctx, &r); err != nil {
					r.c.Close()
				}
			}
			if err != nil {
				n.log.Debug("pre-building a delivery circuit failed", "err", err)
				return
			}
			p.mu.Lock()
			p.ready = append(p.ready, r)
			p.mu.Unlock()
		}
	}()
}

// closeDeliveryPool destroys the unused pre-built circuits.
func (n *Node) closeDeliveryPool() {
	p := &n.deliveryPool
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.ready {
		r.c.Close()
	}
	p.ready = nil
}

// buildDeliveryCircuit selects a path to a delivery node avoid allows,
// builds the circuit and prepays it.
func (n *Node) buildDeliveryCircuit(ctx context.Context, avoid mempool.Avoid) (readyCircuit, error) {
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
		hops := make([]circuit.HopInfo, len(ads))
		for i, ad := range ads {
			hops[i] = circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
		}
		bctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.BuildTimeout)
		c, err := n.engine.Build(bctx, hops)
		cancel()
		if err != nil {
			return readyCircuit{}, fmt.Errorf("build delivery circuit: %w", err)
		}
		if err := n.prepare(ctx, c, pool.Path{Hops: hops, Meta: paidPath{ads, discovery.RoleMempool}}); err != nil {
			c.Close()
			return readyCircuit{}, err
		}
		return readyCircuit{c: c, node: final.Peer, group: group, built: time.Now()}, nil
	}
	return readyCircuit{}, fmt.Errorf("%w: every candidate is in a network to avoid", mempool.ErrNoDeliveryNode)
}

// circuitConn is a stream whose Close also destroys its circuit.
type circuitConn struct {
	net.Conn
	c    *circuit.Circuit
	once sync.Once
}

func (cc *circuitConn) Close() error {
	err := cc.Conn.Close()
	cc.once.Do(func() { cc.c.Close() })
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
	// LastError is the last round's failure, if any.
	LastError string `json:"last_error,omitempty"`
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
	info := BroadcastInfo{Transactions: []BroadcastEntry{}}
	for _, e := range es {
		tx := proxy.PrivateBroadcastTx{TxID: e.TxID, WTxID: e.TxID, Hex: hex.EncodeToString(e.Raw), Peers: []proxy.PrivateBroadcastPeer{}}
		if t, err := mempool.CheckRawTx(e.Raw); err == nil {
			tx.WTxID = t.WTxID
		}
		for _, p := range e.AcceptedBy {
			tx.Peers = append(tx.Peers, proxy.PrivateBroadcastPeer{Address: p})
		}
		info.Transactions = append(info.Transactions, BroadcastEntry{
			PrivateBroadcastTx: tx, TimeAdded: e.Added.Unix(), Attempts: e.Attempts, LastError: e.LastError,
		})
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
