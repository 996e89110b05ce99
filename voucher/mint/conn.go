package mint

import (
	"context"
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/voucher"
)

// Via is all the mint learns of who sent a request: the remote end of the
// libp2p connection it arrived on. For a /co-infuse/mint/1 stream that is
// the buyer itself; for ServeConn it is the circuit's previous hop, which
// node passes in (circuit.BeginRequest.Peer and its link's address). It is
// never logged.
type Via struct {
	// Circuit is true for a request that arrived through a circuit.
	Circuit bool
	// Peer is the remote peer of the connection; Addr its address, or nil
	// when unknown.
	Peer peer.ID
	Addr ma.Multiaddr
}

// SessionLen is the length of a circuit session cookie (PROTOCOL.md §4.3),
// the buyer's name in ServeConn.
const SessionLen = 8

// ServeConn serves one mint request on conn, a stream through a circuit
// that ends at this node (VOUCHERS.md §3.7): the same messages, one request
// and one response per stream, as a /co-infuse/mint/1 stream (§3.1).
// session is this hop's session cookie of that circuit; it stands in for
// the buyer in the per-buyer open-quote cap, since the mint cannot know who
// is at the other end. It is never logged.
//
// The caps are the libp2p handler's: one message of at most
// voucher.MaxMessageSize bytes, StreamTimeout for the whole exchange,
// Lightning calls included, and the open-quote caps. In place of the
// resource manager, at most MaxCircuitStreams calls are served at once;
// beyond that conn gets Error 9 (busy) without being read. A message over
// the cap, a short message or a read error closes conn without an answer;
// an unknown message type is answered Error 1, like any malformed request.
//
// ServeConn closes conn before it returns. It returns early, closing conn,
// when ctx ends, the deadline passes or the mint stops; Stop waits for it.
func (m *Mint) ServeConn(ctx context.Context, conn net.Conn, session [SessionLen]byte, via Via) {
	defer conn.Close()
	if !m.enter() {
		return
	}
	defer m.handlers.Done()
	deadline := time.Now().Add(m.cfg.StreamTimeout)
	_ = conn.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	// Stop cancels m.ctx: end Lightning calls and free a read or write
	// blocked on a slow peer now, not at the deadline. So does the
	// caller's ctx.
	stopMint := context.AfterFunc(m.ctx, cancel)
	defer stopMint()
	stopConn := context.AfterFunc(ctx, func() { conn.Close() })
	defer stopConn()

	if m.connStreams.Add(1) > int64(m.cfg.MaxCircuitStreams) {
		m.connStreams.Add(-1)
		m.log.Debug("mint stream over a circuit refused", "err", voucher.ErrBusy)
		e := voucher.ErrorResponse{Code: voucher.CodeBusy}
		resp, _ := e.MarshalBinary()
		_ = voucher.WriteMessage(conn, resp)
		return
	}
	defer m.connStreams.Add(-1)

	if m.beforeRead != nil {
		m.beforeRead()
	}
	req, err := voucher.ReadMessage(conn)
	if err != nil {
		m.log.Debug("bad mint request over a circuit", "err", err)
		return
	}
	via.Circuit = true
	m.observe(via)
	resp := m.serve(ctx, sessionOwner(session), req)
	_ = voucher.WriteMessage(conn, resp)
}

// observe tells Config.Observe where a request came from.
func (m *Mint) observe(v Via) {
	if m.cfg.Observe != nil {
		m.cfg.Observe(v)
	}
}
