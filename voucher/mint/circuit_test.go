package mint

import (
	"context"
	"net"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
)

// circuitHost is a libp2p host on loopback with a started circuit engine;
// key nil makes a client-only engine.
func circuitHost(t *testing.T, key *circuit.OnionKey, begin circuit.BeginFunc) (host.Host, *circuit.Engine) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e, err := circuit.New(circuit.Config{Host: h, OnionKey: key, Begin: begin})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return h, e
}

func onionKey(t *testing.T) *circuit.OnionKey {
	t.Helper()
	k, err := circuit.GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestQuoteThroughCircuit: a client builds a two-hop circuit whose last hop
// serves its mint on the service mux, dials cell.ServiceMint and gets a
// quote with an invoice of the hop's (fake) LND. The mint counts the open
// quote against the circuit's session, never a libp2p peer: it does not
// learn who the client is.
func TestQuoteThroughCircuit(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t)
	f := newFixture(t)
	lastKey, relayKey := onionKey(t), onionKey(t)
	_, client := circuitHost(t, nil, nil)
	m := f.open(t)
	mux := circuit.NewMux()
	t.Cleanup(func() { mux.Close() })
	if err := mux.HandleServe(cell.ServiceMint, nil, func(ctx context.Context, req circuit.BeginRequest, conn net.Conn) {
		m.ServeConn(ctx, conn, req.Cookie, Via{Peer: req.Peer})
	}); err != nil {
		t.Fatal(err)
	}
	relay, _ := circuitHost(t, relayKey, nil)
	last, _ := circuitHost(t, lastKey, mux.Begin)

	c, err := client.Build(ctx, []circuit.HopInfo{
		{Peer: relay.ID(), Addrs: relay.Addrs(), OnionKey: relayKey.Public()},
		{Peer: last.ID(), Addrs: last.Addrs(), OnionKey: lastKey.Public()},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	target, err := cell.ParseTarget(cell.MintTarget)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Dial(ctx, cell.ServiceMint, target)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := voucher.WriteMessage(s, mustMarshal(t, &voucher.QuoteRequest{Amount: 5})); err != nil {
		t.Fatal(err)
	}
	resp, err := voucher.ReadMessage(s)
	if err != nil {
		t.Fatal(err)
	}
	q, err := voucher.ParseQuote(resp)
	if err != nil {
		t.Fatalf("answer %x: %v", resp, err)
	}
	if q.Amount != 5 || q.Payee != f.ln.PayeeKey {
		t.Fatalf("quote %+v", q)
	}
	inv, err := f.ln.DecodeInvoice(ctx, q.PayReq)
	if err != nil || inv.AmountSat != 5 || inv.PayHash != q.PayHash {
		t.Fatalf("invoice %+v, %v", inv, err)
	}
	m.openMu.Lock()
	open := append([]openQuote(nil), m.open...)
	m.openMu.Unlock()
	if len(open) != 1 || !open[0].owner.circuit || open[0].owner.peer != "" || open[0].owner.session == ([SessionLen]byte{}) {
		t.Fatalf("open quotes %+v, want one owned by a circuit session", open)
	}
}
