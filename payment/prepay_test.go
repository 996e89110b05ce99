package payment

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher"
)

// spentMint is a hop's mint for the handshake tests: a payload is
// sats(8) | serial(8) | flag(1); flag 1 is a forged signature, 2 a mint
// that cannot redeem now, 3 a mint that never answers (until ctx ends).
// Serials are spent once, as a real spent set would.
type spentMint struct {
	mu    sync.Mutex
	spent map[uint64]bool
}

func newSpentMint() *spentMint { return &spentMint{spent: make(map[uint64]bool)} }

func (m *spentMint) redeem(ctx context.Context, payload []byte) (uint64, error) {
	if len(payload) != 17 {
		return 0, fmt.Errorf("spent mint: %d bytes: %w", len(payload), voucher.ErrMalformed)
	}
	switch payload[16] {
	case 1:
		return 0, voucher.ErrBadSignature
	case 2:
		return 0, voucher.ErrUnavailable
	case 3:
		<-ctx.Done()
		return 0, ctx.Err()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	serial := binary.BigEndian.Uint64(payload[8:16])
	if m.spent[serial] {
		return 0, voucher.ErrSpent
	}
	m.spent[serial] = true
	return binary.BigEndian.Uint64(payload[:8]), nil
}

// testWallet hands out spentMint vouchers and records how each
// reservation was settled.
type testWallet struct {
	mu      sync.Mutex
	serial  uint64
	flag    byte   // set on every payload
	fixed   []byte // if set, every reservation is this payload (a replay)
	settled map[string]int
}

func newTestWallet() *testWallet { return &testWallet{settled: make(map[string]int)} }

func (w *testWallet) reserve(_ peer.ID, sats uint64) (Reservation, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.serial++
	p := binary.BigEndian.AppendUint64(nil, sats)
	p = binary.BigEndian.AppendUint64(p, w.serial)
	p = append(p, w.flag)
	if w.fixed != nil {
		p = bytes.Clone(w.fixed)
	}
	note := func(s string) func() error {
		return func() error {
			w.mu.Lock()
			w.settled[s]++
			w.mu.Unlock()
			return nil
		}
	}
	return Reservation{Payload: p, Sats: sats, Commit: note("spent"), Release: note("released"), Unsure: note("unsure")}, nil
}

func (w *testWallet) counts() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.settled))
	for k, v := range w.settled {
		out[k] = v
	}
	return out
}

// newHandshakeNet is a client and len(prices) paid relays on 127.0.0.1
// whose ledgers take payment in the handshake (Ledger.Prepay), each from
// a spentMint of its own. client adjusts the client engine's Config.
func newHandshakeNet(t testing.TB, prices []uint64, client func(*circuit.Config)) (*paidNet, []*spentMint) {
	t.Helper()
	pn := &paidNet{}
	var mints []*spentMint
	for i := range len(prices) + 1 {
		h, key := newHopHost(t)
		cfg := circuit.Config{Host: h, OnionKey: key, Begin: loopbackBegin}
		if i == 0 && client != nil {
			client(&cfg)
		}
		if i > 0 {
			m := newSpentMint()
			l, err := NewLedger(LedgerConfig{Redeem: m.redeem, PriceSatPerMB: prices[i-1]})
			if err != nil {
				t.Fatal(err)
			}
			cfg.Account, cfg.TopUp, cfg.SessionClosed, cfg.Prepay = l.Account, l.TopUp, l.Closed, l.Prepay
			mints = append(mints, m)
			pn.ledgers = append(pn.ledgers, l)
			pn.path = append(pn.path, circuit.HopInfo{Peer: h.ID(), Addrs: h.Addrs(), OnionKey: key.Public()})
			pn.hops = append(pn.hops, Hop{Index: i - 1, Peer: h.ID(), PriceSatPerMB: prices[i-1]})
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
	return pn, mints
}

// paidPath is pn's path with every hop paid through b.
func (pn *paidNet) paidPath(b *Build) []circuit.HopInfo {
	p := append([]circuit.HopInfo(nil), pn.path...)
	for i := range p {
		p[i].Prepay = b.Prepay(i)
	}
	return p
}

// A paid hop refuses a CREATE that carries no vouchers; no session opens
// and nothing is charged.
func TestHandshakeWithoutVouchersRefused(t *testing.T) {
	t.Parallel()
	ctx := testCtxP(t)
	pn, _ := newHandshakeNet(t, []uint64{1, 1, 2}, nil)
	_, err := pn.client.Build(ctx, pn.path)
	if !errors.Is(err, circuit.ErrPayment) {
		t.Fatalf("build without vouchers = %v, want ErrPayment", err)
	}
	if st := pn.ledgers[0].Stats().Total; st.Sessions != 0 || st.BytesCharged != 0 {
		t.Fatalf("hop 1 ledger after an unpaid CREATE: %+v", st)
	}
}

// A paid circuit builds with each hop paid in its handshake, carries
// traffic, and is then topped up as it goes; every reservation is spent.
func TestHandshakePaidCircuitCarriesTraffic(t *testing.T) {
	t.Parallel()
	ctx := testCtxP(t)
	pn, _ := newHandshakeNet(t, []uint64{1, 1, 2}, nil)
	w := newTestWallet()
	cl, err := NewClient(ClientConfig{Reserve: w.reserve})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	b, err := cl.NewBuild(pn.hops, true)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pn.client.Build(ctx, pn.paidPath(b))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pc, err := cl.OpenBuilt(c, b)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for i, l := range pn.ledgers {
		if st := l.Stats().Total; st.Sessions != 1 || st.SatsRedeemed == 0 {
			t.Fatalf("hop %d ledger after the build: %+v", i+1, st)
		}
	}
	const n = 8 << 20
	s, err := c.Dial(ctx, cell.ServiceExit, bulkServer(t, n))
	if err != nil {
		t.Fatal(err)
	}
	conn := pc.Wrap(s)
	if _, err := io.CopyN(io.Discard, conn, n); err != nil {
		t.Fatalf("echo %d bytes: %v (circuit: %v, payments %+v)", n, err, c.Err(), pc.Stats())
	}
	_ = conn.Close()
	for i, st := range pc.Stats() {
		if st.Stopped || st.TopUps < 2 || st.SatsPaid == 0 {
			t.Fatalf("hop %d: %+v, want paid in the handshake and topped up", i+1, st)
		}
	}
	if got := w.counts(); got["released"] != 0 || got["unsure"] != 0 || got["spent"] < 6 {
		t.Fatalf("settled %v, want every reservation spent", got)
	}
}

// Refused handshakes settle their vouchers by the reason: a forged batch
// is spent (worthless here), a mint that cannot redeem now hands them
// back, and a hop that never answers leaves them unsure, to be settled by
// its mint (a swap, VOUCHERS.md §3.10) before any is offered again.
func TestHandshakeRefusalsSettle(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		flag byte
		want string
	}{
		{"forged", 1, "spent"},
		{"mint unavailable", 2, "released"},
		{"no answer", 3, "unsure"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := testCtxP(t)
			pn, _ := newHandshakeNet(t, []uint64{1}, func(cfg *circuit.Config) {
				cfg.Limits.CreateTimeout = 2 * time.Second // the client gives up on a silent hop
			})
			w := newTestWallet()
			w.flag = tc.flag
			cl, err := NewClient(ClientConfig{Reserve: w.reserve})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			b, err := cl.NewBuild(pn.hops, true)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := pn.client.Build(ctx, pn.paidPath(b)); err == nil {
				t.Fatal("build with refused vouchers succeeded")
			}
			if got := w.counts(); len(got) != 1 || got[tc.want] != 1 {
				t.Fatalf("settled %v, want one %s", got, tc.want)
			}
		})
	}
}

// The same vouchers offered on two circuits at once credit only one: the
// other hop handshake is refused as already spent.
func TestHandshakeReplayTwoCircuits(t *testing.T) {
	t.Parallel()
	ctx := testCtxP(t)
	pn, _ := newHandshakeNet(t, []uint64{1}, nil)
	w := newTestWallet()
	w.fixed = append(binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, 5), 42), 0)
	cl, err := NewClient(ClientConfig{Reserve: w.reserve})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	type result struct {
		c   *circuit.Circuit
		err error
	}
	res := make(chan result, 2)
	for range 2 {
		b, err := cl.NewBuild(pn.hops, true)
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			c, err := pn.client.Build(ctx, pn.paidPath(b))
			res <- result{c, err}
		}()
	}
	var built int
	for range 2 {
		r := <-res
		if r.err == nil {
			built++
			defer r.c.Close()
			continue
		}
		if !errors.Is(r.err, circuit.ErrPayment) {
			t.Fatalf("replayed build failed with %v, want a payment refusal", r.err)
		}
	}
	if built != 1 {
		t.Fatalf("%d circuits built on one set of vouchers, want 1", built)
	}
	if st := pn.ledgers[0].Stats().Total; st.SatsRedeemed != 5 {
		t.Fatalf("hop redeemed %d sats, want 5", st.SatsRedeemed)
	}
}

// testCtxP bounds a test generously for a loaded machine.
func testCtxP(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
