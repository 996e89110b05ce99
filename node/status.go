package node

import (
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/co-infuse/co-infuse/exit"
)

// StatusVersion is the schema version of Status. It changes only when a
// field is removed, renamed or changes meaning; new fields keep it.
const StatusVersion = 1

// Status is what GET /v1/status on the admin socket answers and what
// `co-infuse status --json` prints. Scripts (a docker HEALTHCHECK) read it,
// so keys are snake_case and stable under StatusVersion; every key without
// omitempty is always present.
type Status struct {
	// Version is StatusVersion.
	Version int `json:"version"`
	// ID is the node's libp2p peer ID.
	ID    string `json:"id"`
	Roles []Role `json:"roles"`
	// Addrs are the node's listen addresses with /p2p/<id>; never null.
	Addrs []string `json:"addrs"`
	// SOCKS and HTTPTunnel are the front ends' listen addresses, "" when
	// off.
	SOCKS      string `json:"socks"`
	HTTPTunnel string `json:"http_tunnel"`
	// UptimeSec is the time since the node finished starting, in seconds.
	UptimeSec int64 `json:"uptime_sec"`
	// Client is set when the node runs the client role.
	Client *ClientStatus `json:"client,omitempty"`
	// Relay is set when the node runs the relay or exit role.
	Relay *RelayStatus `json:"relay,omitempty"`
	// Tor is set when the node runs a managed tor (the tor section).
	Tor *TorStatus `json:"tor,omitempty"`
	// Payments is "" when payments are off, "ready" once LND answered,
	// and otherwise what the node still waits for
	// (lnd.wait_for_credentials), e.g. "waiting for lnd macaroon at
	// /lnd/admin.macaroon".
	Payments string `json:"payments,omitempty"`
}

// ClientStatus is the client side of a node: its circuits and its wallet.
type ClientStatus struct {
	// Circuits are the open circuits, built ones only, pre-built ones
	// (Isolation "") included; never null.
	Circuits []CircuitStatus `json:"circuits"`
	// Wallet is nil when payments are off.
	Wallet *WalletStatus `json:"wallet,omitempty"`
	// Mempool is the transaction outbox, nil unless mempool.rpc is on.
	Mempool *MempoolStatus `json:"mempool,omitempty"`
	// Prebuilt counts the circuits in Circuits that were built ahead and
	// not yet given to any isolation key.
	Prebuilt int `json:"prebuilt"`
	// OnionServices are the onion services this node publishes (through
	// the control port), ordered by address; never null.
	OnionServices []OnionServiceStatus `json:"onion_services"`
	// Nodes are, per node used as a hop since start, the circuits through
	// it and what they carried and paid there, open and closed circuits
	// together, ordered by peer ID; never null. With a node's own
	// relay.bytes_carried and relay.sats_earned these show what it billed.
	Nodes []NodeStatus `json:"nodes"`
}

// OnionServiceStatus is one onion service this node publishes.
type OnionServiceStatus struct {
	// Address is "<56 chars>.onion".
	Address string `json:"address"`
	// Ports are the virtual ports, in the order given.
	Ports []uint16 `json:"ports"`
	// Intros counts the introduction points held now.
	Intros int `json:"intros"`
	// Published is set once a descriptor was stored on a co-infuse HSDir.
	Published bool `json:"published"`
	// Tor is the service's dual publication on Tor through the local tor:
	// "published", "pending" or "error: <why>"; "" when no tor is
	// configured or tor.publish_onions is off.
	Tor string `json:"tor,omitempty"`
}

// MempoolStatus is the client's private-broadcast outbox.
type MempoolStatus struct {
	// RPC is the JSON-RPC port's address.
	RPC string `json:"rpc"`
	// Queued counts transactions in the outbox (not yet accepted and
	// seen back); Accepted those of them a delivery node accepted.
	Queued   int `json:"queued"`
	Accepted int `json:"accepted"`
	// Delivered and Rejected count transactions that left the outbox
	// since start: echoed, or refused by the backends.
	Delivered uint64 `json:"delivered"`
	Rejected  uint64 `json:"rejected"`
	// GivenUp counts transactions given up at the age or round limit
	// (mempool.give_up_after, mempool.max_attempts) that are still listed
	// by getprivatebroadcastinfo.
	GivenUp int `json:"given_up"`
}

// DeliveryStatus is the mempool role's counters since start.
type DeliveryStatus struct {
	Submits     uint64 `json:"submits"`
	Accepted    uint64 `json:"accepted"`
	Rejected    uint64 `json:"rejected"`
	Unavailable uint64 `json:"unavailable"`
	Queries     uint64 `json:"queries"`
}

// NodeStatus is one node's lifetime figures as this client's hop.
type NodeStatus struct {
	Peer string `json:"peer"`
	// Circuits counts circuits built through it.
	Circuits int `json:"circuits"`
	// BytesCarried is the RELAY traffic it carried for us, as it counts.
	BytesCarried uint64 `json:"bytes_carried"`
	// SatsPaid is the vouchers it was given, in sats.
	SatsPaid uint64 `json:"sats_paid"`
	// OverCharged counts circuits on which it billed more than the client
	// counted (or credited less than its advertised price buys); the
	// client stopped paying it and closed them.
	OverCharged int `json:"over_charged,omitempty"`
}

// CircuitStatus is one client circuit.
type CircuitStatus struct {
	// ID is the circuit's 64-bit ID, a decimal string in JSON so that jq
	// and JavaScript (53-bit numbers) keep every digit.
	ID uint64 `json:"id,string"`
	// Isolation is the isolation key's SOCKS username; never the password.
	// "" for a pre-built circuit no key has claimed.
	Isolation string `json:"isolation"`
	// Port is the target port the circuit was built for (its exit allows
	// it).
	Port uint16 `json:"port"`
	// AgeSec is the time since the circuit was built, in seconds.
	AgeSec int64 `json:"age_sec"`
	// Dirty is true once the circuit has been in use longer than
	// circuit.max_dirtiness: it takes no new streams and closes when its
	// streams end.
	Dirty bool `json:"dirty"`
	// Streams counts the streams open now.
	Streams int `json:"streams"`
	// Prebuilt is true for a circuit built ahead and not yet given to
	// any isolation key (Isolation is then "", as for streams without
	// credentials).
	Prebuilt bool `json:"prebuilt"`
	// Hops are the circuit's hops, first hop first; never null.
	Hops []HopStatus `json:"hops"`
}

// HopStatus is one hop of a client circuit and what the client paid it.
type HopStatus struct {
	// Peer is the hop's peer ID.
	Peer string `json:"peer"`
	// Role is what the hop does in this circuit: "guard", "relay" or
	// "exit".
	Role string `json:"role"`
	// BytesCarried is the RELAY traffic this hop has carried for the
	// circuit in both directions, in bytes, counted as the hop charges its
	// session (cell.Size per cell), so it can be checked against the
	// hop's own bytes_carried.
	BytesCarried uint64 `json:"bytes_carried"`
	// BytesPaidFor is the traffic prepaid and topped up at this hop, in
	// bytes; 0 when payments are off.
	BytesPaidFor uint64 `json:"bytes_paid_for"`
	// SatsPaid is the value of the vouchers spent at this hop, in sats.
	SatsPaid uint64 `json:"sats_paid"`
	// PayProblem is why the client stopped paying this hop and closed the
	// circuit (it over-charged, or answered a malformed TOPUP_ACK), or
	// else the reason the hop last gave for crediting less than a top-up
	// offered (e.g. "already spent"); empty if neither
	// (payment.HopStats.LastReason).
	PayProblem string `json:"pay_problem,omitempty"`
	// OverCharged: the hop billed more bytes than the client counted for
	// it, or credited less than its advertised price buys.
	OverCharged bool `json:"over_charged,omitempty"`
}

// RelayStatus is the relay side of a node: the hop sessions it carries for
// others and what they paid.
type RelayStatus struct {
	// Sessions counts hop sessions open now.
	Sessions int `json:"sessions"`
	// SessionsTotal counts hop sessions opened since the node started.
	SessionsTotal uint64 `json:"sessions_total"`
	// BytesCarried is the traffic relayed since start, in bytes.
	BytesCarried uint64 `json:"bytes_carried"`
	// SatsEarned is the value of the vouchers redeemed since start, in
	// sats.
	SatsEarned uint64 `json:"sats_earned"`
	// Payments counts the payments that credited something since start:
	// one per paid handshake and one per TOPUP.
	Payments uint64 `json:"payments"`
	// ByRole splits the counters by the role the node played in each
	// session ("relay", "exit", "mempool"); never null.
	ByRole map[string]RoleStatus `json:"by_role"`
	// Delivery is set with the mempool role.
	Delivery *DeliveryStatus `json:"delivery,omitempty"`
	// TorGateway is set with the tor-gateway role: the streams clients
	// sent it and how it answered.
	TorGateway *exit.GatewayStats `json:"tor_gateway,omitempty"`
}

// RoleStatus is RelayStatus for one role.
type RoleStatus struct {
	Sessions      int    `json:"sessions"`
	SessionsTotal uint64 `json:"sessions_total"`
	BytesCarried  uint64 `json:"bytes_carried"`
	SatsEarned    uint64 `json:"sats_earned"`
}

// Status reports what the node is doing, as GET /v1/status does. Call it
// only after Start has returned nil.
func (n *Node) Status() Status {
	if n.admin == nil {
		return n.status(time.Now())
	}
	return n.status(n.admin.started)
}

// status builds Status for a node started at started. The admin handler
// calls it with the start time its own server holds, since n.admin is set
// only after the server runs. It is cheap enough to poll every few seconds.
func (n *Node) status(started time.Time) Status {
	st := Status{
		Version: StatusVersion,
		ID:      n.host.ID().String(),
		Roles:   n.cfg.Roles,
		Addrs:   []string{},
	}
	for _, a := range n.P2PAddrs() {
		st.Addrs = append(st.Addrs, a.String())
	}
	if a := n.SOCKSAddr(); a != nil {
		st.SOCKS = a.String()
	}
	if a := n.HTTPAddr(); a != nil {
		st.HTTPTunnel = a.String()
	}
	st.UptimeSec = int64(time.Since(started) / time.Second)
	st.Tor = n.torStatus()
	if n.cfg.Payments.Enabled {
		st.Payments = "ready"
		if w := n.payWait.state(); w != "" {
			st.Payments = w
		}
	}
	if n.cfg.Has(RoleClient) {
		cs := &ClientStatus{Circuits: []CircuitStatus{}, OnionServices: n.onionServiceStatus()}
		now := time.Now()
		nodes := n.totals.snapshot()
		for _, c := range n.pool.Snapshot() {
			addCircuit(nodes, c.Circuit, n.paidCircuit(c.Circuit))
			cst := CircuitStatus{ID: c.ID, Isolation: c.Isolation, Port: c.Port, Dirty: c.Dirty, Streams: c.Streams, Prebuilt: c.Clean,
				AgeSec: int64(now.Sub(c.Built) / time.Second), Hops: []HopStatus{}}
			carried := c.Circuit.HopBytes()
			for i, p := range c.Path {
				h := HopStatus{Peer: p.String(), Role: hopRole(i, len(c.Path))}
				if i < len(carried) {
					h.BytesCarried = carried[i]
				}
				cst.Hops = append(cst.Hops, h)
			}
			for _, ps := range n.paidCircuit(c.Circuit).Stats() {
				if ps.Index < len(cst.Hops) {
					cst.Hops[ps.Index].SatsPaid = ps.SatsPaid
					cst.Hops[ps.Index].BytesPaidFor = uint64(max(ps.BytesPaid, 0))
					cst.Hops[ps.Index].PayProblem = ps.LastReason
					cst.Hops[ps.Index].OverCharged = ps.OverCharged
				}
			}
			cs.Circuits = append(cs.Circuits, cst)
			if c.Clean {
				cs.Prebuilt++
			}
		}
		cs.Nodes = make([]NodeStatus, 0, len(nodes))
		for _, id := range slices.Sorted(maps.Keys(nodes)) {
			cs.Nodes = append(cs.Nodes, nodes[id])
		}
		switch w, err := n.WalletStatus(); {
		case err == nil:
			cs.Wallet = &w
		case !errors.Is(err, ErrNoWallet) && !errors.Is(err, errPaymentsNotReady):
			n.log.Warn("status: wallet unreadable", "err", err)
		}
		if n.mempool != nil {
			ms := &MempoolStatus{}
			if a := n.RPCAddr(); a != nil {
				ms.RPC = a.String()
			}
			if es, err := n.mempool.Queued(); err == nil {
				ms.Queued = len(es)
				for _, e := range es {
					if e.Accepted() {
						ms.Accepted++
					}
				}
			}
			if gs, err := n.mempool.GivenUp(); err == nil {
				ms.GivenUp = len(gs)
			}
			cst := n.mempool.Stats()
			ms.Delivered, ms.Rejected = cst.Delivered, cst.Rejected
			cs.Mempool = ms
		}
		st.Client = cs
	}
	if n.ledger != nil {
		ls := n.ledger.Stats()
		rs := &RelayStatus{
			Sessions:      ls.Total.Open,
			SessionsTotal: ls.Total.Sessions,
			BytesCarried:  ls.Total.BytesCharged,
			SatsEarned:    ls.Total.SatsRedeemed,
			Payments:      ls.Total.TopUps,
			ByRole:        map[string]RoleStatus{},
		}
		for role, r := range ls.Roles {
			rs.ByRole[role] = RoleStatus{Sessions: r.Open, SessionsTotal: r.Sessions, BytesCarried: r.BytesCharged, SatsEarned: r.SatsRedeemed}
		}
		if ds, ok := n.DeliveryStats(); ok {
			rs.Delivery = &DeliveryStatus{Submits: ds.Submits, Accepted: ds.Accepted, Rejected: ds.Rejected, Unavailable: ds.Unavailable, Queries: ds.Queries}
		}
		if gs, ok := n.TorGatewayStats(); ok {
			rs.TorGateway = &gs
		}
		st.Relay = rs
	}
	return st
}

// hopRole names hop i of n by its position: the first hop is the guard,
// the last the exit, the rest relays.
func hopRole(i, n int) string {
	switch {
	case i == n-1:
		return "exit"
	case i == 0:
		return "guard"
	default:
		return "relay"
	}
}
