package payment

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/voucher/wallet"
)

// fakeWallet holds a voucher balance per node. Reservations take from it;
// Release gives back; Commit records the spend.
type fakeWallet struct {
	mu       sync.Mutex
	balance  map[peer.ID]uint64 // guarded by mu
	buys     []payment          // guarded by mu
	spent    []payment          // guarded by mu
	released []payment          // guarded by mu
	buyErr   error              // guarded by mu
	buyNone  bool               // guarded by mu: Buy succeeds but adds nothing
}

// payloadFor is the fake batch paying sats of node's vouchers.
func payloadFor(node peer.ID, sats uint64) string {
	return string(node) + ":" + strconv.FormatUint(sats, 10)
}

type payment struct {
	node peer.ID
	sats uint64
}

func newFakeWallet(balance map[peer.ID]uint64) *fakeWallet {
	if balance == nil {
		balance = make(map[peer.ID]uint64)
	}
	return &fakeWallet{balance: balance}
}

func (w *fakeWallet) reserve(node peer.ID, sats uint64) (Reservation, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.balance[node] < sats {
		return Reservation{}, fmt.Errorf("reserve %d: %w", sats, wallet.ErrInsufficient)
	}
	w.balance[node] -= sats
	p := payment{node, sats}
	var once sync.Once
	return Reservation{
		Payload: []byte(payloadFor(node, sats)),
		Commit: func() error {
			once.Do(func() { w.mu.Lock(); w.spent = append(w.spent, p); w.mu.Unlock() })
			return nil
		},
		Release: func() error {
			once.Do(func() {
				w.mu.Lock()
				w.balance[node] += sats
				w.released = append(w.released, p)
				w.mu.Unlock()
			})
			return nil
		},
	}, nil
}

func (w *fakeWallet) buy(ctx context.Context, node peer.ID, sats uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buys = append(w.buys, payment{node, sats})
	if w.buyErr != nil {
		return w.buyErr
	}
	if !w.buyNone {
		w.balance[node] += sats
	}
	return nil
}

func (w *fakeWallet) snapshot() (buys, spent, released []payment) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]payment(nil), w.buys...), append([]payment(nil), w.spent...), append([]payment(nil), w.released...)
}

// fakeCircuit is a TopUpper. Every TOPUP is sent on calls (buffered), then
// answered by answer, or acknowledged with allowance 42 if answer is nil.
type fakeCircuit struct {
	calls  chan topUpCall
	answer func(ctx context.Context, i int) ([]byte, error)
}

type topUpCall struct {
	hop     int
	payload string
}

func newFakeCircuit(answer func(ctx context.Context, i int) ([]byte, error)) *fakeCircuit {
	return &fakeCircuit{calls: make(chan topUpCall, 64), answer: answer}
}

func (c *fakeCircuit) TopUp(ctx context.Context, i int, payload []byte) ([]byte, error) {
	c.calls <- topUpCall{i, string(payload)}
	if c.answer != nil {
		return c.answer(ctx, i)
	}
	return []byte{0, 0, 0, 0, 0, 0, 0, 42}, nil
}

// drain returns the calls made so far.
func (c *fakeCircuit) drain() []topUpCall {
	var out []topUpCall
	for {
		select {
		case call := <-c.calls:
			out = append(out, call)
		default:
			return out
		}
	}
}

// blockUntilDone is an answer from a hop that never acknowledges.
func blockUntilDone(ctx context.Context, _ int) ([]byte, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func rich() map[peer.ID]uint64 {
	return map[peer.ID]uint64{"A": 1 << 40, "B": 1 << 40, "C": 1 << 40, "D": 1 << 40}
}

func newTestClient(t *testing.T, w *fakeWallet, cfg ClientConfig) *Client {
	t.Helper()
	cfg.Reserve = w.reserve
	if cfg.Buy == nil {
		cfg.Buy = w.buy
	}
	cl, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

var testHops = []Hop{
	{Index: 0, Peer: "A", PriceSatPerMB: 1},
	{Index: 1, Peer: "B", PriceSatPerMB: 2},
	{Index: 2, Peer: "C", PriceSatPerMB: 2_000_000}, // above 10^6 sat/MB
	{Index: 4, Peer: "D", PriceSatPerMB: 0},         // free, still 1 sat
}

func TestNewClientConfig(t *testing.T) {
	t.Parallel()
	if _, err := NewClient(ClientConfig{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no Reserve: err = %v", err)
	}
	if _, err := NewClient(ClientConfig{Reserve: newFakeWallet(nil).reserve, TopUpTimeout: -1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("negative timeout: err = %v", err)
	}
	cl, err := NewClient(ClientConfig{Reserve: newFakeWallet(nil).reserve})
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	cl.Close() // twice is fine
	if _, err := cl.Open(context.Background(), newFakeCircuit(nil), testHops); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: err = %v", err)
	}
}

func TestClientPrepay(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	fc := newFakeCircuit(nil)
	pc, err := cl.Open(context.Background(), fc, testHops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	want := []struct {
		hop  int
		node peer.ID
		sats uint64
	}{
		{0, "A", 9},          // ceil(8,388,608 × 1 / 10^6)
		{1, "B", 17},         // ceil(8,388,608 × 2 / 10^6)
		{2, "C", 16_777_216}, // 8,388,608 × 2
		{4, "D", 1},          // price 0: at least 1 sat
	}
	calls := fc.drain()
	_, spent, released := w.snapshot()
	if len(calls) != len(want) || len(spent) != len(want) || len(released) != 0 {
		t.Fatalf("calls %v, spent %v, released %v", calls, spent, released)
	}
	st := pc.Stats()
	for i, w := range want {
		if w.sats != SatsFor(PrepayBytes, testHops[i].PriceSatPerMB) {
			t.Fatalf("table disagrees with SatsFor for hop %d", i)
		}
		if calls[i] != (topUpCall{w.hop, payloadFor(w.node, w.sats)}) {
			t.Errorf("TOPUP %d = %+v, want hop %d paying %d sats", i, calls[i], w.hop, w.sats)
		}
		if spent[i] != (payment{w.node, w.sats}) {
			t.Errorf("spent %d = %+v", i, spent[i])
		}
		if st[i].SatsPaid != w.sats || st[i].BytesPaid != PrepayBytes || st[i].TopUps != 1 || st[i].Allowance != 42 || st[i].Hop != testHops[i] {
			t.Errorf("stats %d = %+v", i, st[i])
		}
	}
}

func TestClientNoPaidHops(t *testing.T) {
	t.Parallel()
	cl := newTestClient(t, newFakeWallet(nil), ClientConfig{})
	fc := newFakeCircuit(nil)
	pc, err := cl.Open(context.Background(), fc, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	for _, p := range []*Circuit{pc, nil} {
		if p.Wrap(a) != a {
			t.Error("Wrap of a circuit with no paid hop changed the conn")
		}
		p.Count(10 * TopUpEveryBytes)
		p.Close()
		if len(p.Stats()) != 0 {
			t.Error("stats of nothing")
		}
	}
	if calls := fc.drain(); len(calls) != 0 {
		t.Fatalf("paid nobody, yet sent %v", calls)
	}
}

// TestClientTopUpOnce: concurrent Counts that together reach
// TopUpEveryBytes start exactly one top-up, paying used × 5/4 at each hop;
// bytes counted while it runs wait for the next one.
func TestClientTopUpOnce(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hold := make(chan struct{})
	first := true
	var mu sync.Mutex
	fc := newFakeCircuit(func(ctx context.Context, i int) ([]byte, error) {
		mu.Lock()
		block := first && i == 0
		mu.Unlock()
		if block {
			select {
			case <-hold:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return nil, nil
	})
	hops := testHops[:2]
	mu.Lock()
	first = false
	mu.Unlock()
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	mu.Lock()
	first = true
	mu.Unlock()

	const writers = 16
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() { pc.Count(TopUpEveryBytes / writers) })
	}
	wg.Wait()
	got := <-fc.calls // the top-up is in flight, held at hop 0
	if want := (topUpCall{0, payloadFor("A", SatsFor(topUpBytes(TopUpEveryBytes), 1))}); got != want {
		t.Fatalf("first top-up %+v, want %+v", got, want)
	}
	// More than another TopUpEveryBytes while it runs: no second top-up.
	for range writers {
		wg.Go(func() { pc.Count(TopUpEveryBytes / 4) })
	}
	wg.Wait()
	mu.Lock()
	first = false
	mu.Unlock()
	close(hold)
	if got, want := <-fc.calls, (topUpCall{1, payloadFor("B", SatsFor(topUpBytes(TopUpEveryBytes), 2))}); got != want {
		t.Fatalf("second hop %+v, want %+v", got, want)
	}
	// The next Count starts the next top-up, for everything since. No
	// Count runs now, so waiting on the circuit's WaitGroup is safe: it
	// returns once the running top-up has ended.
	pc.wg.Wait()
	pc.Count(1)
	next := 4*TopUpEveryBytes + 1
	for i, h := range hops {
		want := topUpCall{h.Index, payloadFor(h.Peer, SatsFor(topUpBytes(int64(next)), h.PriceSatPerMB))}
		if got := <-fc.calls; got != want {
			t.Fatalf("next top-up, hop %d: %+v, want %+v", i, got, want)
		}
	}
	pc.Close()
	if extra := fc.drain(); len(extra) != 0 {
		t.Fatalf("extra TOPUPs %v", extra)
	}
	st := pc.Stats()
	for i, h := range hops {
		wantBytes := int64(PrepayBytes) + topUpBytes(TopUpEveryBytes) + topUpBytes(int64(next))
		if st[i].TopUps != 3 || st[i].BytesPaid != wantBytes || st[i].Failures != 0 {
			t.Errorf("hop %v: %+v", h, st[i])
		}
	}
}

func TestClientBuysWhenShort(t *testing.T) {
	t.Parallel()
	errLN := errors.New("no route")
	need := SatsFor(PrepayBytes, 1) // 9
	for _, tc := range []struct {
		name     string
		target   uint64
		buyErr   error
		buyNone  bool
		noBuy    bool // ClientConfig.Buy nil
		wantBuy  uint64
		wantErr  error
		wantPaid bool
	}{
		{"no target: buys what is needed", 0, nil, false, false, need, nil, true},
		{"target above need", 1000, nil, false, false, 1000, nil, true},
		{"target below need", 5, nil, false, false, need, nil, true},
		{"purchase fails", 1000, errLN, false, false, 1000, errLN, false},
		{"purchase buys too little", 1000, nil, true, false, 1000, wallet.ErrInsufficient, false},
		{"no Buy configured", 1000, nil, false, true, 0, wallet.ErrInsufficient, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFakeWallet(nil)
			w.buyErr, w.buyNone = tc.buyErr, tc.buyNone
			cfg := ClientConfig{TargetBalanceSat: tc.target}
			cfg.Reserve = w.reserve
			if !tc.noBuy {
				cfg.Buy = w.buy
			}
			cl, err := NewClient(cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			fc := newFakeCircuit(nil)
			pc, err := cl.Open(context.Background(), fc, testHops[:1])
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("Open: err = %v, want %v", err, tc.wantErr)
			}
			pc.Close()
			buys, spent, _ := w.snapshot()
			if tc.noBuy && len(buys) != 0 || !tc.noBuy && (len(buys) != 1 || buys[0] != (payment{"A", tc.wantBuy})) {
				t.Errorf("buys %v, want one of %d sats", buys, tc.wantBuy)
			}
			if calls := fc.drain(); tc.wantPaid != (len(calls) == 1) || tc.wantPaid != (len(spent) == 1) {
				t.Errorf("calls %v, spent %v, paid = %v", calls, spent, tc.wantPaid)
			}
		})
	}
}

// TestClientReleaseOrCommit: vouchers are marked spent only on TOPUP_ACK
// and released on any failure, for the prepay and for top-ups.
func TestClientReleaseOrCommit(t *testing.T) {
	t.Parallel()
	refuse := errors.New("status 1")
	for _, tc := range []struct {
		name    string
		failAt  int // hop index whose TOPUP fails; -1 none
		wantErr bool
	}{
		{"all acknowledged", -1, false},
		{"first hop refuses", 0, true},
		{"second hop refuses", 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFakeWallet(rich())
			cl := newTestClient(t, w, ClientConfig{})
			fc := newFakeCircuit(func(_ context.Context, i int) ([]byte, error) {
				if i == tc.failAt {
					return nil, refuse
				}
				return nil, nil
			})
			_, err := cl.Open(context.Background(), fc, testHops[:3])
			if tc.wantErr != (err != nil) || err != nil && !errors.Is(err, refuse) {
				t.Fatalf("Open: err = %v", err)
			}
			_, spent, released := w.snapshot()
			wantSpent := 3
			if tc.failAt >= 0 {
				wantSpent = tc.failAt
			}
			if len(spent) != wantSpent {
				t.Errorf("spent %v, want %d", spent, wantSpent)
			}
			if tc.failAt >= 0 && (len(released) != 1 || released[0].node != testHops[tc.failAt].Peer) {
				t.Errorf("released %v, want hop %d's", released, tc.failAt)
			}
			if tc.failAt < 0 && len(released) != 0 {
				t.Errorf("released %v", released)
			}
			for _, s := range spent {
				for _, r := range released {
					if s == r {
						t.Errorf("%+v both spent and released", s)
					}
				}
			}
		})
	}
}

// TestClientTopUpFailure: a failed background top-up releases its
// vouchers, is recorded, and stops at the failing hop.
func TestClientTopUpFailure(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	refuse := errors.New("status 1")
	var mu sync.Mutex
	failing := false
	fc := newFakeCircuit(func(_ context.Context, i int) ([]byte, error) {
		mu.Lock()
		defer mu.Unlock()
		if failing && i == 0 {
			return nil, refuse
		}
		return nil, nil
	})
	pc, err := cl.Open(context.Background(), fc, testHops[:2])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	mu.Lock()
	failing = true
	mu.Unlock()
	pc.Count(TopUpEveryBytes)
	<-fc.calls
	pc.Close() // waits for the top-up
	if calls := fc.drain(); len(calls) != 0 {
		t.Fatalf("kept paying after a failure: %v", calls)
	}
	_, spent, released := w.snapshot()
	if len(spent) != 2 || len(released) != 1 || released[0] != (payment{"A", SatsFor(topUpBytes(TopUpEveryBytes), 1)}) {
		t.Fatalf("spent %v, released %v", spent, released)
	}
	st := pc.Stats()
	if st[0].Failures != 1 || !errors.Is(st[0].LastErr, refuse) || st[0].TopUps != 1 || st[1].Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
	pc.Count(10 * TopUpEveryBytes) // closed: nothing starts
	if calls := fc.drain(); len(calls) != 0 {
		t.Fatalf("paid after Close: %v", calls)
	}
}

// TestClientCloseWaits: Client.Close and Circuit.Close cancel an in-flight
// top-up and return only after it released its vouchers.
func TestClientCloseWaits(t *testing.T) {
	t.Parallel()
	for _, closeClient := range []bool{true, false} {
		t.Run(fmt.Sprintf("client=%v", closeClient), func(t *testing.T) {
			t.Parallel()
			w := newFakeWallet(rich())
			cl := newTestClient(t, w, ClientConfig{TopUpTimeout: time.Hour})
			var mu sync.Mutex
			hang := false
			fc := newFakeCircuit(func(ctx context.Context, i int) ([]byte, error) {
				mu.Lock()
				h := hang
				mu.Unlock()
				if h {
					return blockUntilDone(ctx, i)
				}
				return nil, nil
			})
			pc, err := cl.Open(context.Background(), fc, testHops[:1])
			if err != nil {
				t.Fatal(err)
			}
			fc.drain()
			mu.Lock()
			hang = true
			mu.Unlock()
			pc.Count(TopUpEveryBytes)
			<-fc.calls // in flight
			if closeClient {
				cl.Close()
				cl.Close()
			} else {
				pc.Close()
				pc.Close()
			}
			_, _, released := w.snapshot()
			if len(released) != 1 {
				t.Fatalf("Close returned before the top-up released its vouchers: %v", released)
			}
			if st := pc.Stats(); !errors.Is(st[0].LastErr, context.Canceled) {
				t.Fatalf("last error %v, want context.Canceled", st[0].LastErr)
			}
			pc.Close()
		})
	}
}

// TestClientSilentHop is the attacker's view: a hop that never answers a
// TOPUP holds a background top-up for TopUpTimeout and the prepay for the
// caller's ctx, no longer; the vouchers come back.
func TestClientSilentHop(t *testing.T) {
	t.Parallel()
	t.Run("top-up", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			w := newFakeWallet(rich())
			cl := newTestClient(t, w, ClientConfig{TopUpTimeout: time.Minute})
			var mu sync.Mutex
			silent := false
			released := make(chan struct{})
			fc := newFakeCircuit(func(ctx context.Context, i int) ([]byte, error) {
				mu.Lock()
				s := silent
				mu.Unlock()
				if !s {
					return nil, nil
				}
				_, err := blockUntilDone(ctx, i)
				close(released)
				return nil, err
			})
			pc, err := cl.Open(context.Background(), fc, testHops[:2])
			if err != nil {
				t.Fatal(err)
			}
			fc.drain()
			mu.Lock()
			silent = true
			mu.Unlock()
			start := time.Now()
			pc.Count(TopUpEveryBytes)
			<-released // the bubble's clock runs while everything waits
			synctest.Wait()
			if d := time.Since(start); d != time.Minute {
				t.Errorf("the top-up waited %v, want TopUpTimeout", d)
			}
			if pc.topping.Load() {
				t.Error("top-up goroutine still running")
			}
			st := pc.Stats()
			if !errors.Is(st[0].LastErr, context.DeadlineExceeded) || st[1].Failures != 0 {
				t.Errorf("stats %+v", st)
			}
			if _, _, rel := w.snapshot(); len(rel) != 1 {
				t.Errorf("released %v", rel)
			}
			pc.Close()
		})
	})
	t.Run("prepay", func(t *testing.T) {
		t.Parallel()
		synctest.Test(t, func(t *testing.T) {
			w := newFakeWallet(rich())
			cl := newTestClient(t, w, ClientConfig{})
			fc := newFakeCircuit(blockUntilDone)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			_, err := cl.Open(ctx, fc, testHops[:2])
			if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 10*time.Second {
				t.Errorf("Open: %v after %v", err, time.Since(start))
			}
			if _, spent, rel := w.snapshot(); len(rel) != 1 || len(spent) != 0 {
				t.Errorf("spent %v, released %v", spent, rel)
			}
		})
	})
	t.Run("client closes during prepay", func(t *testing.T) {
		t.Parallel()
		w := newFakeWallet(rich())
		cl := newTestClient(t, w, ClientConfig{})
		fc := newFakeCircuit(blockUntilDone)
		done := make(chan error, 1)
		go func() {
			_, err := cl.Open(context.Background(), fc, testHops[:1])
			done <- err
		}()
		<-fc.calls
		cl.Close()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Open: err = %v, want context.Canceled", err)
		}
	})
}

func TestWrapCounts(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	fc := newFakeCircuit(nil)
	pc, err := cl.Open(context.Background(), fc, testHops[:1])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	ca := pc.Wrap(a)
	msg := make([]byte, 1000)
	errc := make(chan error, 1)
	go func() {
		_, err := b.Write(msg)
		errc <- err
	}()
	if _, err := ca.Read(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	go func() {
		_, err := b.Read(make([]byte, 1000))
		errc <- err
	}()
	if _, err := ca.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if got := pc.used.Load(); got != 2000 {
		t.Fatalf("counted %d bytes, want 2000", got)
	}
}

// A reservation worth more than asked (denominations without exact
// change) is recorded at its value, and the bytes it buys follow it.
func TestPaidAtReservationValue(t *testing.T) {
	t.Parallel()
	c := newFakeCircuit(nil)
	cl, err := NewClient(ClientConfig{Reserve: func(peer.ID, uint64) (Reservation, error) {
		return Reservation{Payload: []byte("v"), Sats: 32}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pc, err := cl.Open(t.Context(), c, []Hop{{Index: 0, Peer: "hop", PriceSatPerMB: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	st := pc.Stats()[0]
	if st.SatsPaid != 32 || st.BytesPaid != CreditBytes(32, 2) {
		t.Fatalf("prepay recorded %d sats for %d bytes, want 32 sats for %d bytes", st.SatsPaid, st.BytesPaid, CreditBytes(32, 2))
	}
}
