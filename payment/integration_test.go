package payment

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher"
)

// paidNet is a client engine and three relays on 127.0.0.1, each relay
// with a real Ledger whose Redeem is a fake mint: a payload is 8 bytes
// big-endian, worth that many sats.
type paidNet struct {
	client  *circuit.Engine
	path    []circuit.HopInfo
	ledgers []*Ledger
	hops    []Hop
}

func fakeRedeem(_ context.Context, payload []byte) (uint64, error) {
	if len(payload) != 8 {
		return 0, fmt.Errorf("fake mint: %d bytes: %w", len(payload), voucher.ErrMalformed)
	}
	return binary.BigEndian.Uint64(payload), nil
}

// fakeReserve is a wallet with unlimited vouchers of any node, in the
// fakeRedeem format.
func fakeReserve(_ peer.ID, sats uint64) (Reservation, error) {
	return Reservation{Payload: binary.BigEndian.AppendUint64(nil, sats), Sats: sats}, nil
}

func newPaidNet(t testing.TB, prices []uint64) *paidNet {
	t.Helper()
	return newRelayNet(t, prices, true)
}

// newRelayNet is newPaidNet, with the Ledgers left out (payment off: the
// engines account nothing) when paid is false.
func newRelayNet(t testing.TB, prices []uint64, paid bool, clientCfg ...func(*circuit.Config)) *paidNet {
	t.Helper()
	pn := &paidNet{}
	for i := range len(prices) + 1 {
		h, key := newHopHost(t)
		cfg := circuit.Config{Host: h, OnionKey: key}
		if i > 0 {
			price := prices[i-1]
			if paid {
				l, err := NewLedger(LedgerConfig{Redeem: fakeRedeem, PriceSatPerMB: price})
				if err != nil {
					t.Fatal(err)
				}
				cfg.Account, cfg.TopUp, cfg.SessionClosed = l.Account, l.TopUp, l.Closed
				pn.ledgers = append(pn.ledgers, l)
			}
			cfg.Begin = loopbackBegin
			pn.path = append(pn.path, circuit.HopInfo{Peer: h.ID(), Addrs: h.Addrs(), OnionKey: key.Public()})
			pn.hops = append(pn.hops, Hop{Index: i - 1, Peer: h.ID(), PriceSatPerMB: price})
		}
		if i == 0 {
			for _, f := range clientCfg {
				f(&cfg)
			}
		}
		e, err := circuit.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = e.Close() })
		if i == 0 {
			pn.client = e
		}
	}
	return pn
}

// loopbackBegin connects exit streams to loopback TCP only.
func loopbackBegin(ctx context.Context, req circuit.BeginRequest) (net.Conn, error) {
	a, ok := req.Target.Addr()
	if req.Service != cell.ServiceExit || !ok || !a.IsLoopback() {
		return nil, circuit.ErrServiceNotOffered
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), fmt.Sprint(req.Target.Port())))
}

// echoServer echoes every connection on 127.0.0.1 until the test ends.
func echoServer(t *testing.T) cell.Target {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	conns := make(chan net.Conn, 1)
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		conns <- c
		_, _ = io.Copy(c, c)
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		select {
		case c := <-conns:
			_ = c.Close()
		default:
		}
		<-done
	})
	target, err := cell.ParseTarget(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return target
}

// TestPaidChattyCircuit is a Bitcoin-P2P-like connection on a paid
// three-hop circuit: 10,000 small request/response round trips, each a
// mostly empty cell each way at every hop. The circuit must not die for
// payment, no hop may be found over-charging, and at the end the client's
// per-hop counts must equal what each hop's ledger charged.
func TestPaidChattyCircuit(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pn := newPaidNet(t, []uint64{1, 1, 2})
	target := echoServer(t)
	cl, err := NewClient(ClientConfig{Reserve: fakeReserve})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c, err := pn.client.Build(ctx, pn.path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := cl.Open(ctx, c, pn.hops)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// A refused TOPUP says why, through the circuit engine, with status 1.
	out, err := c.TopUp(ctx, 1, []byte("junk"))
	var ack Ack
	if !errors.Is(err, circuit.ErrPayment) || ack.UnmarshalBinary(out) != nil || ack.Reason != ReasonMalformed || ack.CreditedSat != 0 {
		t.Fatalf("junk TOPUP: %x, %v; want status 1 with reason malformed", out, err)
	}
	s, err := c.Dial(ctx, cell.ServiceExit, target)
	if err != nil {
		t.Fatal(err)
	}
	conn := pc.Wrap(s)
	const rounds = 10_000
	req, resp := make([]byte, 40), make([]byte, 40)
	for i := range rounds {
		binary.BigEndian.PutUint64(req, uint64(i))
		if _, err := conn.Write(req); err != nil {
			t.Fatalf("round trip %d: write: %v (circuit: %v, payments: %+v)", i, err, c.Err(), pc.Stats())
		}
		if _, err := io.ReadFull(conn, resp); err != nil {
			t.Fatalf("round trip %d: read: %v (circuit: %v, payments: %+v)", i, err, c.Err(), pc.Stats())
		}
		if binary.BigEndian.Uint64(resp) != uint64(i) {
			t.Fatalf("round trip %d: echoed %x", i, resp)
		}
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}

	// Cells settle (END, SENDMEs, a top-up the checker may start), then
	// each hop has charged exactly what the client counted for it.
	var carried []uint64
	var sessions []SessionStats
	settled := func() bool {
		carried = c.HopBytes()
		sessions = sessions[:0]
		for i, l := range pn.ledgers {
			s, ok := l.Session(c.Cookie(i))
			if !ok || s.BytesCharged != carried[i] {
				return false
			}
			sessions = append(sessions, s)
		}
		return true
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !settled() {
		select {
		case <-ctx.Done():
			t.Fatalf("client counts %v never matched the hops' charges (sessions %+v)", carried, sessions)
		case <-tick.C:
		}
	}
	if err := c.Err(); err != nil {
		t.Fatalf("circuit closed: %v", err)
	}
	for i, st := range pc.Stats() {
		s := sessions[i]
		// 10,000 round trips cost each hop at least 2 cells each.
		if carried[i] < 2*rounds*cell.Size || s.Refused || st.Stopped || st.OverCharged || st.Failures != 0 {
			t.Errorf("hop %d: carried %d, session %+v, client %+v", i, carried[i], s, st)
		}
		if st.SatsPaid != s.SatsRedeemed || uint64(st.TopUps) != s.TopUps || st.TopUps < 10 {
			t.Errorf("hop %d: client paid %d sats in %d top-ups, hop redeemed %d in %d", i, st.SatsPaid, st.TopUps, s.SatsRedeemed, s.TopUps)
		}
		if lead := st.BytesPaid - int64(carried[i]); lead < 0 || lead > 2*TargetAheadBytes+CreditBytes(1, st.PriceSatPerMB) {
			t.Errorf("hop %d: paid for %d bytes, carried %d", i, st.BytesPaid, carried[i])
		}
	}
	t.Logf("carried per hop %v; payments %+v", carried, pc.Stats())
}

// newHopHost is a libp2p host on 127.0.0.1 (closed in t.Cleanup) and an
// onion key, for one engine of a test network.
func newHopHost(t testing.TB) (host.Host, *circuit.OnionKey) {
	t.Helper()
	h, err := libp2p.New(
		libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.Close() })
	key, err := circuit.GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	return h, key
}
