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
	return nil
}

// Mempool is the node's mempool client, or nil when it is off.
func (n *Node) Mempool() *mempool.Client { return n.mempool }

// maxDeliverySelect bounds path selections for one delivery stream when
// chosen nodes sit in a network to avoid.
const maxDeliverySelect = 8

// dialDelivery is mempool.ClientConfig.Dial: it selects a path whose last
// hop plays the mempool role and is neither a node nor (unless
// discovery.allow_same_network) in a network of avoid, builds a new
// circuit for it alone (never from the pool, never shared), pays it ahead
// like any circuit, and opens the delivery stream. Closing the returned
// Conn destroys the circuit.
func (n *Node) dialDelivery(ctx context.Context, avoid mempool.Avoid) (mempool.Delivery, error) {
	var exclude []peer.ID
	for _, s := range avoid.Nodes {
		if id, err := peer.Decode(s); err == nil {
			exclude = append(exclude, id)
		}
	}
	target, err := cell.ParseTarget(mempool.Target)
	if err != nil {
		return mempool.Delivery{}, err // unreachable: a constant
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
				return mempool.Delivery{}, fmt.Errorf("%w: %w", mempool.ErrNoDeliveryNode, err)
			}
			return mempool.Delivery{}, err
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
		conn, err := n.buildDelivery(ctx, ads, target)
		if err != nil {
			return mempool.Delivery{}, err
		}
		return mempool.Delivery{Conn: conn, Node: final.Peer.String(), Network: group}, nil
	}
	return mempool.Delivery{}, fmt.Errorf("%w: every candidate is in a network to avoid", mempool.ErrNoDeliveryNode)
}

// buildDelivery builds a circuit through ads and opens the delivery
// stream on it.
func (n *Node) buildDelivery(ctx context.Context, ads []discovery.Advert, target cell.Target) (net.Conn, error) {
	hops := make([]circuit.HopInfo, len(ads))
	for i, ad := range ads {
		hops[i] = circuit.HopInfo{Peer: ad.Peer, Addrs: ad.Addrs, OnionKey: ad.OnionKey}
	}
	bctx, cancel := context.WithTimeout(ctx, n.cfg.Circuit.BuildTimeout)
	defer cancel()
	c, err := n.engine.Build(bctx, hops)
	if err != nil {
		return nil, fmt.Errorf("build delivery circuit: %w", err)
	}
	if err := n.prepare(ctx, c, pool.Path{Hops: hops, Meta: ads}); err != nil {
		c.Close()
		return nil, err
	}
	s, err := c.Dial(ctx, cell.ServiceMempool, target)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("open delivery stream: %w", err)
	}
	return &circuitConn{Conn: n.paidCircuit(c).Wrap(s), c: c}, nil
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

// BroadcastEntry is one queued transaction in getprivatebroadcastinfo.
type BroadcastEntry struct {
	TxID string `json:"txid"`
	Hex  string `json:"hex"`
	// TimeAdded is when sendrawtransaction took it, in Unix seconds.
	TimeAdded int64 `json:"time_added"`
	// Attempts counts delivery and echo rounds.
	Attempts int `json:"attempts"`
	// Accepted counts delivery nodes that accepted it so far; it leaves
	// the queue once another one reports it in its mempool or chain.
	Accepted  int    `json:"accepted"`
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
		info.Transactions = append(info.Transactions, BroadcastEntry{
			TxID: e.TxID, Hex: hex.EncodeToString(e.Raw), TimeAdded: e.Added.Unix(),
			Attempts: e.Attempts, Accepted: len(e.AcceptedBy), LastError: e.LastError,
		})
	}
	return info, nil
}

func (n *Node) abortBroadcast(_ context.Context, id string) (any, error) {
	if err := n.mempool.Abort(id); err != nil {
		if errors.Is(err, mempool.ErrUnknownTx) {
			return nil, &proxy.RPCError{Code: proxy.RPCInvalidAddressOrKey, Message: "Transaction not in private broadcast queue"}
		}
		return nil, err
	}
	return map[string]any{"removed_transactions": []string{id}}, nil
}
