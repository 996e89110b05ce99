package payment

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/voucher"
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
	// maxBatch, if not 0, is guarded by mu: a reservation of more sats
	// fails with voucher.ErrAmount (the wallet holds only 1-sat vouchers
	// and a batch holds at most maxBatch).
	maxBatch uint64
}

// payloadFor is the fake batch paying sats of node's vouchers.
func payloadFor(node peer.ID, sats uint64) string {
	return string(node) + ":" + strconv.FormatUint(sats, 10)
}

// satsOf is the value of a payloadFor batch.
func satsOf(payload string) uint64 {
	_, s, _ := strings.Cut(payload, ":")
	n, _ := strconv.ParseUint(s, 10, 64)
	return n
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
	if w.maxBatch != 0 && sats > w.maxBatch {
		return Reservation{}, fmt.Errorf("reserve %d sats: %d vouchers: %w", sats, sats, voucher.ErrAmount)
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

// fakeCircuit is a TopUpper whose hops behave like honest Ledgers: each
// credits CreditBytes of the sats in a TOPUP at its price and charges the
// cells the test says it carried (add), plus extra. Every TOPUP is sent
// on calls (buffered) before it is answered; answer, if set, answers
// instead (it may call honest). A TOPUP and its TOPUP_ACK each add a cell
// at every hop up to the one paid, as on a real circuit.
type fakeCircuit struct {
	calls  chan topUpCall
	answer func(ctx context.Context, i int, payload string) ([]byte, error)

	mu      sync.Mutex
	prices  [cell.MaxHops]uint64 // guarded by mu
	carried [cell.MaxHops]uint64 // guarded by mu
	credit  [cell.MaxHops]int64  // guarded by mu
	extra   [cell.MaxHops]uint64 // guarded by mu: bytes over-charged
	// pastGrace is guarded by mu: a hop that carried more than its credit
	// and SessionGraceBytes (a real hop would have destroyed the circuit).
	pastGrace []string
	closed    bool // guarded by mu
}

type topUpCall struct {
	hop     int
	payload string
}

func newFakeCircuit(hops []Hop, answer func(ctx context.Context, i int, payload string) ([]byte, error)) *fakeCircuit {
	fc := &fakeCircuit{calls: make(chan topUpCall, 4096), answer: answer}
	for _, h := range hops {
		fc.prices[h.Index] = h.PriceSatPerMB
	}
	return fc
}

func (c *fakeCircuit) TopUp(ctx context.Context, i int, payload []byte) ([]byte, error) {
	c.calls <- topUpCall{i, string(payload)}
	if c.answer != nil {
		return c.answer(ctx, i, string(payload))
	}
	return c.honest(i, string(payload))
}

// honest is the answer of an honest hop i to a TOPUP paying payload.
func (c *fakeCircuit) honest(i int, payload string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for j := 0; j <= i; j++ {
		c.carried[j] += 2 * cell.Size // TOPUP and TOPUP_ACK
	}
	sats := satsOf(payload)
	c.credit[i] = min(c.credit[i]+CreditBytes(sats, c.prices[i]), MaxAllowanceBytes)
	return encodeAck(c.ackLocked(i, sats, ReasonNone)), nil
}

// ackLocked is hop i's Ack after crediting sats. c.mu must be held.
func (c *fakeCircuit) ackLocked(i int, sats uint64, r AckReason) Ack {
	charged := c.carried[i] + c.extra[i]
	allowance := int64(MaxAllowanceBytes)
	if c.prices[i] != 0 {
		allowance = c.credit[i] - int64(charged)
	}
	return Ack{Reason: r, CreditedSat: sats, Allowance: allowance, Charged: charged}
}

// add makes every hop carry cells more cells.
func (c *fakeCircuit) add(cells uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.carried {
		c.carried[i] += cells * cell.Size
		if c.prices[i] != 0 && c.credit[i]-int64(c.carried[i]) < -SessionGraceBytes && len(c.pastGrace) < 10 {
			c.pastGrace = append(c.pastGrace, fmt.Sprintf("hop %d carried %d bytes, credited %d", i, c.carried[i], c.credit[i]))
		}
	}
}

func (c *fakeCircuit) HopCarried(i int) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.carried) {
		return 0
	}
	return c.carried[i]
}

func (c *fakeCircuit) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func (c *fakeCircuit) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
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
func blockUntilDone(ctx context.Context, _ int, _ string) ([]byte, error) {
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

// dueCells is enough cells to take a freshly prepaid hop below the low
// water mark, whatever the sat rounding of its prepay.
const dueCells = TargetAheadBytes / cell.Size

// ackBytes encodes a, for fakes that lie.
func ackBytes(a Ack) []byte {
	b, err := a.AppendBinary(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// refusal is a TOPUP_ACK status 1 carrying a.
func refusal(a Ack) ([]byte, error) {
	return ackBytes(a), fmt.Errorf("topup: status 1: %w", circuit.ErrPayment)
}

func TestNewClientConfig(t *testing.T) {
	t.Parallel()
	if _, err := NewClient(ClientConfig{}); !errors.Is(err, ErrConfig) {
		t.Fatalf("no Reserve: err = %v", err)
	}
	if _, err := NewClient(ClientConfig{Reserve: newFakeWallet(nil).reserve, TopUpTimeout: -1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("negative timeout: err = %v", err)
	}
	if _, err := NewClient(ClientConfig{Reserve: newFakeWallet(nil).reserve, CheckInterval: -1}); !errors.Is(err, ErrConfig) {
		t.Fatalf("negative check interval: err = %v", err)
	}
	cl, err := NewClient(ClientConfig{Reserve: newFakeWallet(nil).reserve})
	if err != nil {
		t.Fatal(err)
	}
	cl.Close()
	cl.Close() // twice is fine
	if _, err := cl.Open(context.Background(), newFakeCircuit(testHops, nil), testHops); !errors.Is(err, ErrClosed) {
		t.Fatalf("Open after Close: err = %v", err)
	}
}

func TestClientPrepay(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	fc := newFakeCircuit(testHops, nil)
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
		{0, "A", 2},         // ceil(1,572,864 × 1 / 10^6)
		{1, "B", 4},         // ceil(1,572,864 × 2 / 10^6)
		{2, "C", 3_145_728}, // 1,572,864 × 2
		{4, "D", 1},         // price 0: at least 1 sat
	}
	calls := fc.drain()
	_, spent, released := w.snapshot()
	if len(calls) != len(want) || len(spent) != len(want) || len(released) != 0 {
		t.Fatalf("calls %v, spent %v, released %v", calls, spent, released)
	}
	st := pc.Stats()
	carried := fc.HopBytes()
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
		credit := CreditBytes(w.sats, testHops[i].PriceSatPerMB)
		if st[i].SatsPaid != w.sats || st[i].BytesPaid != credit || st[i].TopUps != 1 || st[i].Hop != testHops[i] ||
			st[i].Charged == 0 || st[i].Charged > carried[w.hop] || st[i].Stopped || st[i].LastReason != "" {
			t.Errorf("stats %d = %+v", i, st[i])
		}
	}
}

// The prepay covers the cells the build already made a hop carry.
func TestClientPrepayCoversBuild(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: 1_000_000}} // 1 sat per byte
	fc := newFakeCircuit(hops, nil)
	fc.add(3) // two EXTENDs and EXTENDEDs passed the first hop, and a DROP
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	if calls := fc.drain(); len(calls) != 1 || satsOf(calls[0].payload) != PrepayBytes+3*cell.Size {
		t.Fatalf("calls %v, want one paying %d", calls, PrepayBytes+3*cell.Size)
	}
}

func TestClientNoPaidHops(t *testing.T) {
	t.Parallel()
	cl := newTestClient(t, newFakeWallet(nil), ClientConfig{})
	fc := newFakeCircuit(nil, nil)
	pc, err := cl.Open(context.Background(), fc, nil)
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	fc.add(1 << 20)
	for _, p := range []*Circuit{pc, nil} {
		if p.Wrap(a) != a {
			t.Error("Wrap of a circuit with no paid hop changed the conn")
		}
		p.Check()
		p.Close()
		if len(p.Stats()) != 0 {
			t.Error("stats of nothing")
		}
	}
	if calls := fc.drain(); len(calls) != 0 {
		t.Fatalf("paid nobody, yet sent %v", calls)
	}
}

// TestScheduleKeepsAhead drives a circuit of three paid hops through a
// traffic pattern, one step at a time, with every top-up taking latency
// steps to be answered, and checks that no hop ever runs past its grace,
// that the client pays for what the hops carried and not much more, and
// that top-ups stay few.
func TestScheduleKeepsAhead(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		steps   int
		cells   uint64 // per step, at every hop
		latency int    // steps a top-up takes
	}{
		// 10,000 small request/response round trips: one cell each way.
		{"chatty: 10,000 tiny round trips", 10_000, 2, 100},
		// Each top-up lands only after 250 round trips (2 MiB of cells
		// per hop), into the grace: within the schedule's bound.
		{"chatty, top-ups slower than 250 round trips", 10_000, 2, 250},
		// 100 MiB of bulk data, 64 KiB per step.
		{"bulk", 1_600, 16, 20},
		// Each top-up lands only after 2.25 MiB more cells.
		{"bulk, top-ups slower than 2.25 MiB", 1_600, 16, 36},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				hops := []Hop{testHops[0], testHops[1], {Index: 2, Peer: "C", PriceSatPerMB: 2}}
				w := newFakeWallet(rich())
				cl := newTestClient(t, w, ClientConfig{})
				var (
					mu   sync.Mutex
					step int
					tick = make(chan struct{}) // closed and replaced every step
					done bool                  // answer at once from now on
				)
				fc := newFakeCircuit(hops, nil)
				fc.answer = func(ctx context.Context, i int, payload string) ([]byte, error) {
					mu.Lock()
					until := step + tc.latency
					for step < until && !done {
						ch := tick
						mu.Unlock()
						select {
						case <-ch:
						case <-ctx.Done():
							return nil, ctx.Err()
						}
						mu.Lock()
					}
					mu.Unlock()
					return fc.honest(i, payload)
				}
				mu.Lock()
				done = true // the prepay is answered at once
				mu.Unlock()
				pc, err := cl.Open(context.Background(), fc, hops)
				if err != nil {
					t.Fatal(err)
				}
				defer pc.Close()
				mu.Lock()
				done = false
				mu.Unlock()
				for range tc.steps {
					fc.add(tc.cells)
					pc.Check() // what a wrapped stream does on each read and write
					mu.Lock()
					step++
					close(tick)
					tick = make(chan struct{})
					mu.Unlock()
					synctest.Wait()
				}
				// Let the last top-ups land.
				mu.Lock()
				done = true
				close(tick)
				tick = make(chan struct{})
				mu.Unlock()
				synctest.Wait()

				fc.mu.Lock()
				past := fc.pastGrace
				fc.mu.Unlock()
				if len(past) > 0 {
					t.Fatalf("a hop ran past its grace: %v", past)
				}
				carried := fc.HopBytes()
				for i, st := range pc.Stats() {
					c := carried[st.Index]
					lead := st.BytesPaid - int64(c)
					if st.Stopped || st.Failures != 0 || st.Charged > c {
						t.Errorf("hop %d: %+v", i, st)
					}
					// Paid for what it carried, plus at most the allowance
					// kept ahead and one sat of rounding.
					if lead < 0 || lead > 2*TargetAheadBytes+CreditBytes(1, st.PriceSatPerMB) {
						t.Errorf("hop %d carried %d bytes, was paid for %d: lead %d", i, c, st.BytesPaid, lead)
					}
					if most := int(c/(LowWaterBytes/2)) + 4; st.TopUps > most { // slow start: up to two more
						t.Errorf("hop %d: %d top-ups for %d bytes, want at most %d", i, st.TopUps, c, most)
					}
					if st.TopUps < 2 {
						t.Errorf("hop %d was never topped up: %+v", i, st)
					}
				}
				if _, spent, released := w.snapshot(); len(released) != 0 || len(spent) == 0 {
					t.Errorf("spent %d, released %v", len(spent), released)
				}
			})
		})
	}
}

// Checks from many goroutines start one top-up per hop at a time.
func TestClientOneTopUpPerHop(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hold := make(chan struct{})
	var mu sync.Mutex
	holding := false
	hops := testHops[:2]
	fc := newFakeCircuit(hops, nil)
	fc.answer = func(ctx context.Context, i int, payload string) ([]byte, error) {
		mu.Lock()
		h := holding
		mu.Unlock()
		if h {
			select {
			case <-hold:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return fc.honest(i, payload)
	}
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	mu.Lock()
	holding = true
	mu.Unlock()
	fc.add(3_000_000/cell.Size + 1) // both hops are at or below 0 ahead (the prepay's sats bought up to 3 MB)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(pc.Check)
	}
	wg.Wait()
	got := map[int]int{}
	for range 2 {
		got[(<-fc.calls).hop]++
	}
	for range 32 {
		wg.Go(pc.Check)
	}
	wg.Wait()
	if extra := fc.drain(); len(extra) != 0 || got[0] != 1 || got[1] != 1 {
		t.Fatalf("top-ups %v, then %v: want one per hop", got, extra)
	}
	mu.Lock()
	holding = false
	mu.Unlock()
	close(hold)
	pc.Close()
	st := pc.Stats()
	carried := fc.HopBytes()
	for i, s := range st {
		if s.TopUps != 2 || s.BytesPaid-int64(carried[s.Index]) < nextTarget(PrepayBytes)/2 {
			t.Errorf("hop %d: %+v (carried %d)", i, s, carried[s.Index])
		}
	}
}

func TestClientBuysWhenShort(t *testing.T) {
	t.Parallel()
	errLN := errors.New("no route")
	need := SatsFor(PrepayBytes, 1) // 2
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
		{"target below need", 1, nil, false, false, need, nil, true},
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
			fc := newFakeCircuit(testHops, nil)
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

// TestClientReleaseOrCommit: vouchers are marked spent when the hop
// credited them or refused them for good, and released when it did not
// answer, could not redeem now, or refused without saying why.
func TestClientReleaseOrCommit(t *testing.T) {
	t.Parallel()
	noAnswer := errors.New("circuit closed")
	for _, tc := range []struct {
		name       string
		answer     func() ([]byte, error) // hop 1's answer
		wantCommit bool
		wantReason string
	}{
		{"no answer", func() ([]byte, error) { return nil, noAnswer }, false, ""},
		{"status 1 without a reason", func() ([]byte, error) {
			return nil, fmt.Errorf("topup: status 1: %w", circuit.ErrPayment)
		}, false, ""},
		{"mint unavailable", func() ([]byte, error) { return refusal(Ack{Reason: ReasonUnavailable}) }, false, "mint unavailable"},
		{"not yet valid", func() ([]byte, error) { return refusal(Ack{Reason: ReasonNotYetValid}) }, false, "keyset not yet valid"},
		{"malformed batch", func() ([]byte, error) { return refusal(Ack{Reason: ReasonMalformed}) }, false, "malformed batch"},
		{"unknown session", func() ([]byte, error) { return refusal(Ack{Reason: ReasonUnknownSession}) }, false, "unknown session"},
		{"already spent", func() ([]byte, error) { return refusal(Ack{Reason: ReasonSpent}) }, true, "already spent"},
		{"forged", func() ([]byte, error) { return refusal(Ack{Reason: ReasonForged}) }, true, "bad signature"},
		{"unknown keyset", func() ([]byte, error) { return refusal(Ack{Reason: ReasonUnknownKeyset}) }, true, "unknown keyset"},
		{"expired", func() ([]byte, error) { return refusal(Ack{Reason: ReasonExpired}) }, true, "keyset expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFakeWallet(rich())
			cl := newTestClient(t, w, ClientConfig{})
			hops := testHops[:3]
			fc := newFakeCircuit(hops, nil)
			fc.answer = func(_ context.Context, i int, payload string) ([]byte, error) {
				if i == 1 {
					return tc.answer()
				}
				return fc.honest(i, payload)
			}
			_, err := cl.Open(context.Background(), fc, hops)
			if err == nil {
				t.Fatal("Open succeeded with a refusing hop")
			}
			_, spent, released := w.snapshot()
			wantSpent, wantReleased := 1, 1
			if tc.wantCommit {
				wantSpent, wantReleased = 2, 0
			}
			if len(spent) != wantSpent || len(released) != wantReleased {
				t.Errorf("spent %v, released %v; want %d spent, %d released", spent, released, wantSpent, wantReleased)
			}
			if tc.wantReason != "" && !strings.Contains(err.Error(), tc.wantReason) {
				t.Errorf("err %q does not say %q", err, tc.wantReason)
			}
			if fc.isClosed() {
				t.Error("a refusal closed the circuit")
			}
		})
	}
}

// A failed top-up is retried only after retryDelay, doubling per
// consecutive failure; a success resets it.
func TestClientRetryAfterFailure(t *testing.T) {
	t.Parallel()
	var clock fakeClock
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{Now: clock.now})
	var mu sync.Mutex
	failing := false
	hops := testHops[:1]
	fc := newFakeCircuit(hops, nil)
	fc.answer = func(_ context.Context, i int, payload string) ([]byte, error) {
		mu.Lock()
		f := failing
		mu.Unlock()
		if f {
			fc.mu.Lock()
			a := fc.ackLocked(i, 0, ReasonUnavailable)
			fc.mu.Unlock()
			return refusal(a)
		}
		return fc.honest(i, payload)
	}
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	mu.Lock()
	failing = true
	mu.Unlock()
	fc.add(dueCells)
	// settled waits for the running top-up (if any) to end.
	settled := func() {
		t.Helper()
		pc.wg.Wait()
	}
	pc.Check()
	<-fc.calls
	settled()
	for _, d := range []time.Duration{retryMin, 2 * retryMin, 4 * retryMin} {
		clock.advance(d - 1)
		pc.Check()
		settled()
		if calls := fc.drain(); len(calls) != 0 {
			t.Fatalf("retried before %v: %v", d, calls)
		}
		clock.advance(1)
		pc.Check()
		settled()
		if calls := fc.drain(); len(calls) != 1 {
			t.Fatalf("no retry after %v: %v", d, calls)
		}
	}
	mu.Lock()
	failing = false
	mu.Unlock()
	clock.advance(8 * retryMin)
	pc.Check()
	settled()
	st := pc.Stats()[0]
	if st.Failures != 4 || st.TopUps != 2 || st.LastReason != "mint unavailable" || st.Stopped {
		t.Fatalf("stats %+v", st)
	}
	if retryDelay(100) != retryMax || retryDelay(1) != retryMin {
		t.Fatalf("retryDelay bounds: %v, %v", retryDelay(1), retryDelay(100))
	}
}

// A hop whose TOPUP_ACK bills more than the client counted, credits less
// than its price buys, or cannot be parsed, is no longer paid, and the
// circuit is closed.
func TestClientStopsMisbehavingHop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		lie       func(fc *fakeCircuit, i int, payload string) ([]byte, error)
		wantStop  bool
		wantOver  bool
		wantInErr string
		wantSpent bool // the top-up's vouchers were committed
	}{
		{"honest", nil, false, false, "", true},
		{"charges within the tolerance", func(fc *fakeCircuit, i int, p string) ([]byte, error) {
			fc.mu.Lock()
			fc.extra[i] = OverChargeToleranceBytes
			fc.mu.Unlock()
			return fc.honest(i, p)
		}, false, false, "", true},
		{"charges one cell beyond the tolerance", func(fc *fakeCircuit, i int, p string) ([]byte, error) {
			fc.mu.Lock()
			fc.extra[i] = OverChargeToleranceBytes + cell.Size
			fc.mu.Unlock()
			return fc.honest(i, p)
		}, true, true, "the client counted", true},
		{"charges more in a refusal", func(fc *fakeCircuit, i int, p string) ([]byte, error) {
			fc.mu.Lock()
			fc.extra[i] = 1 << 30
			a := fc.ackLocked(i, 0, ReasonSpent)
			fc.mu.Unlock()
			return refusal(a)
		}, true, true, "the client counted", true},
		{"credits at twice its advertised price", func(fc *fakeCircuit, i int, p string) ([]byte, error) {
			fc.mu.Lock()
			defer fc.mu.Unlock()
			sats := satsOf(p)
			fc.credit[i] += CreditBytes(sats, 2*fc.prices[i])
			return encodeAck(fc.ackLocked(i, sats, ReasonNone)), nil
		}, true, true, "advertised price", true},
		{"credits less than offered without a reason", func(fc *fakeCircuit, i int, p string) ([]byte, error) {
			fc.mu.Lock()
			defer fc.mu.Unlock()
			sats := satsOf(p) - 1
			fc.credit[i] += CreditBytes(sats, fc.prices[i])
			return encodeAck(fc.ackLocked(i, sats, ReasonNone)), nil
		}, true, false, "without a reason", true},
		{"malformed ack", func(*fakeCircuit, int, string) ([]byte, error) {
			return []byte{0, 0, 0, 0, 0, 0, 0, 42}, nil
		}, true, false, "malformed", true},
		{"status 1 claiming a credit", func(fc *fakeCircuit, i int, p string) ([]byte, error) {
			return refusal(Ack{Reason: ReasonSpent, CreditedSat: 3})
		}, true, false, "status 1 with 3 sats credited", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFakeWallet(rich())
			cl := newTestClient(t, w, ClientConfig{})
			hops := testHops[:2]
			var mu sync.Mutex
			lying := false
			fc := newFakeCircuit(hops, nil)
			fc.answer = func(_ context.Context, i int, p string) ([]byte, error) {
				mu.Lock()
				l := lying
				mu.Unlock()
				if l && i == 1 && tc.lie != nil {
					return tc.lie(fc, i, p)
				}
				return fc.honest(i, p)
			}
			pc, err := cl.Open(context.Background(), fc, hops)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pc.Close)
			fc.drain()
			mu.Lock()
			lying = true
			mu.Unlock()
			fc.add(dueCells) // both hops are due
			pc.Check()
			pc.wg.Wait()
			_, spent, released := w.snapshot()
			st := pc.Stats()
			if st[1].Stopped != tc.wantStop || st[1].OverCharged != tc.wantOver || st[0].Stopped || fc.isClosed() != tc.wantStop {
				t.Fatalf("stats %+v, circuit closed %v", st, fc.isClosed())
			}
			if tc.wantStop && (!strings.Contains(st[1].LastReason, tc.wantInErr) || !strings.Contains(st[1].LastErr.Error(), tc.wantInErr)) {
				t.Errorf("reason %q, err %v: want %q", st[1].LastReason, st[1].LastErr, tc.wantInErr)
			}
			if tc.wantOver && !errors.Is(st[1].LastErr, ErrOverCharged) || tc.wantStop && !tc.wantOver && !errors.Is(st[1].LastErr, ErrMalformedAck) {
				t.Errorf("err %v", st[1].LastErr)
			}
			if wantSpent := 3 + b2i(tc.wantSpent); len(spent) != wantSpent || len(released) != 1-b2i(tc.wantSpent) {
				t.Errorf("spent %v, released %v", spent, released)
			}
			// Nothing more is paid, whatever the hops carry next.
			fc.drain()
			fc.add(2 * TargetAheadBytes / cell.Size)
			pc.Check()
			pc.wg.Wait()
			if calls := fc.drain(); tc.wantStop != (len(calls) == 0) {
				t.Errorf("after the check, paid %v", calls)
			}
		})
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A hop that credits part of a batch and names the refusal is paid on.
func TestClientPartialCredit(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: 1}}
	fc := newFakeCircuit(hops, nil)
	fc.answer = func(_ context.Context, i int, p string) ([]byte, error) {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		sats := satsOf(p) - 1 // a 1-sat voucher was spent already
		fc.credit[i] += CreditBytes(sats, 1)
		return encodeAck(fc.ackLocked(i, sats, ReasonSpent)), nil
	}
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	st := pc.Stats()[0]
	if st.SatsPaid != 1 || st.BytesPaid != 1_000_000 || st.LastReason != "already spent" || st.Stopped || st.Failures != 0 {
		t.Fatalf("stats %+v", st)
	}
	// The next top-up counts from the 1 MB credited, not the 2 sats paid.
	fc.drain()
	fc.add(3_000_000 / cell.Size)
	carried := fc.HopBytes()[0]
	pc.Check()
	pc.wg.Wait()
	want := payloadFor("A", SatsFor(refillBytes(1_000_000, carried, 0, nextTarget(PrepayBytes)), 1))
	if calls := fc.drain(); len(calls) != 1 || calls[0].payload != want {
		t.Fatalf("calls %v, want one paying %s", calls, want)
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
			hops := testHops[:1]
			fc := newFakeCircuit(hops, nil)
			fc.answer = func(ctx context.Context, i int, p string) ([]byte, error) {
				mu.Lock()
				h := hang
				mu.Unlock()
				if h {
					return blockUntilDone(ctx, i, p)
				}
				return fc.honest(i, p)
			}
			pc, err := cl.Open(context.Background(), fc, hops)
			if err != nil {
				t.Fatal(err)
			}
			fc.drain()
			mu.Lock()
			hang = true
			mu.Unlock()
			fc.add(TargetAheadBytes / cell.Size)
			pc.Check()
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
			pc.Check() // closed: starts nothing
			if calls := fc.drain(); len(calls) != 0 {
				t.Fatalf("paid after Close: %v", calls)
			}
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
			cl := newTestClient(t, w, ClientConfig{TopUpTimeout: time.Minute, CheckInterval: time.Hour})
			var mu sync.Mutex
			silent := false
			released := make(chan struct{})
			hops := testHops[:2]
			fc := newFakeCircuit(hops, nil)
			fc.answer = func(ctx context.Context, i int, p string) ([]byte, error) {
				mu.Lock()
				s := silent
				mu.Unlock()
				if !s || i != 0 {
					return fc.honest(i, p)
				}
				_, err := blockUntilDone(ctx, i, p)
				close(released)
				return nil, err
			}
			pc, err := cl.Open(context.Background(), fc, hops)
			if err != nil {
				t.Fatal(err)
			}
			fc.drain()
			mu.Lock()
			silent = true
			mu.Unlock()
			start := time.Now()
			fc.add(TargetAheadBytes / cell.Size)
			pc.Check()
			<-released // the bubble's clock runs while everything waits
			synctest.Wait()
			if d := time.Since(start); d != time.Minute {
				t.Errorf("the top-up waited %v, want TopUpTimeout", d)
			}
			st := pc.Stats()
			if !errors.Is(st[0].LastErr, context.DeadlineExceeded) || st[1].Failures != 0 || st[1].TopUps != 2 {
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
			fc := newFakeCircuit(testHops, blockUntilDone)
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
		fc := newFakeCircuit(testHops, blockUntilDone)
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

// A wrapped conn's reads and writes check the circuit's hops.
func TestWrapChecks(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{CheckInterval: time.Hour})
	hops := testHops[:1]
	fc := newFakeCircuit(hops, nil)
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	ca := pc.Wrap(a)
	msg := make([]byte, 10)
	for _, dir := range []string{"read", "write"} {
		fc.add(dueCells)
		errc := make(chan error, 1)
		if dir == "read" {
			go func() { _, err := b.Write(msg); errc <- err }()
			_, err = ca.Read(make([]byte, 10))
		} else {
			go func() { _, err := b.Read(make([]byte, 10)); errc <- err }()
			_, err = ca.Write(msg)
		}
		if err := errors.Join(err, <-errc); err != nil {
			t.Fatal(err)
		}
		if call := <-fc.calls; call.hop != 0 {
			t.Fatalf("%s: top-up %+v", dir, call)
		}
		pc.wg.Wait()
	}
}

// The client's checker pays for cells no stream sees.
func TestClientCheckerTicks(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		w := newFakeWallet(rich())
		cl := newTestClient(t, w, ClientConfig{CheckInterval: 10 * time.Second})
		hops := testHops[:2]
		fc := newFakeCircuit(hops, nil)
		pc, err := cl.Open(context.Background(), fc, hops)
		if err != nil {
			t.Fatal(err)
		}
		fc.drain()
		start := time.Now()
		fc.add(dueCells) // keep-alives nobody reads
		for range 2 {
			select {
			case <-fc.calls:
			case <-time.After(time.Minute):
				t.Fatal("no top-up from the checker")
			}
		}
		if d := time.Since(start); d != 10*time.Second {
			t.Errorf("checked after %v, want CheckInterval", d)
		}
		pc.Close()
		cl.mu.Lock()
		n := len(cl.circuits)
		cl.mu.Unlock()
		if n != 0 {
			t.Errorf("closed circuit still checked")
		}
		cl.Close() // the checker ends with the client
	})
}

// A reservation worth more than asked (denominations without exact
// change) is recorded at its value, and the bytes it buys follow it.
func TestPaidAtReservationValue(t *testing.T) {
	t.Parallel()
	hops := []Hop{{Index: 0, Peer: "hop", PriceSatPerMB: 2}}
	c := newFakeCircuit(hops, func(_ context.Context, i int, _ string) ([]byte, error) {
		return encodeAck(Ack{CreditedSat: 32, Allowance: CreditBytes(32, 2)}), nil
	})
	cl, err := NewClient(ClientConfig{Reserve: func(peer.ID, uint64) (Reservation, error) {
		return Reservation{Payload: []byte("v"), Sats: 32}, nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pc, err := cl.Open(t.Context(), c, hops)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	st := pc.Stats()[0]
	if st.SatsPaid != 32 || st.BytesPaid != CreditBytes(32, 2) || st.Stopped {
		t.Fatalf("prepay recorded %+v, want 32 sats for %d bytes", st, CreditBytes(32, 2))
	}
}

// HopBytes is every hop's HopCarried, for assertions.
func (c *fakeCircuit) HopBytes() []uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]uint64(nil), c.carried[:]...)
}

// TestClientFirstTopUp: a circuit that carries a short connection's few
// KiB never tops up its prepay; one that carried FirstTopUpAfterBytes
// beyond its build is topped up at once, though its allowance is still
// above half the target, so a download's first top-up starts with most
// of the prepay and grace ahead.
func TestClientFirstTopUp(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: 1}, {Index: 1, Peer: "B", PriceSatPerMB: 2}}
	fc := newFakeCircuit(hops, nil)
	fc.add(3) // the build
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	fc.add(FirstTopUpAfterBytes/cell.Size - 1) // a short connection
	pc.Check()
	pc.wg.Wait()
	if calls := fc.drain(); len(calls) != 0 {
		t.Fatalf("a short connection topped up: %v", calls)
	}
	for _, s := range pc.Stats() {
		if s.TopUps != 1 || s.BytesPaid-int64(fc.HopBytes()[s.Index]) < PrepayBytes/2 {
			t.Fatalf("hop %d: %+v: not above half the first target", s.Index, s)
		}
	}
	fc.add(1)
	pc.Check()
	pc.wg.Wait()
	if calls := fc.drain(); len(calls) != len(hops) {
		t.Fatalf("after FirstTopUpAfterBytes: calls %v, want one per hop", calls)
	}
	carried := fc.HopBytes()
	for _, s := range pc.Stats() {
		if s.TopUps != 2 || s.BytesPaid-int64(carried[s.Index]) < nextTarget(PrepayBytes) {
			t.Errorf("hop %d: %+v (carried %d): not topped up to the next target", s.Index, s, carried[s.Index])
		}
	}
}

// TestClientTopUpFitsOneBatch: a top-up whose vouchers would not fit one
// batch (the wallet holds only 1-sat vouchers at the hop: voucher.ErrAmount)
// pays what fits, and the next top-ups the rest, instead of failing
// every retry while reads wait for it.
func TestClientTopUpFitsOneBatch(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	w.maxBatch = 12
	cl := newTestClient(t, w, ClientConfig{})
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: 2}}
	fc := newFakeCircuit(hops, nil)
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	fc.add(30_000_000 / cell.Size) // 60 sats carried: far more than a batch
	pc.Check()
	pc.wg.Wait()
	calls := fc.drain()
	if len(calls) < 2 {
		t.Fatalf("calls %v, want top-ups until the hop is ahead again", calls)
	}
	for _, c := range calls {
		if satsOf(c.payload) > w.maxBatch {
			t.Errorf("a TOPUP of %d sats, more than a batch holds", satsOf(c.payload))
		}
	}
	st := pc.Stats()[0]
	if st.Failures != 0 || st.BytesPaid-int64(fc.HopBytes()[0]) < PrepayBytes/2 {
		t.Fatalf("stats %+v (carried %d): not paid ahead again", st, fc.HopBytes()[0])
	}
}

// TestClientTopUpRoundedDown: top-ups reserve with ReserveTopUp, which may
// set aside less than asked (Reservation.Sats); the hop's credit of what
// was offered is a full one, not a malformed ack. The prepay uses
// Reserve.
func TestClientTopUpRoundedDown(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	var mu sync.Mutex
	var asked []uint64
	cl := newTestClient(t, w, ClientConfig{ReserveTopUp: func(node peer.ID, sats uint64) (Reservation, error) {
		mu.Lock()
		asked = append(asked, sats)
		mu.Unlock()
		less := max(sats/2, 1)
		r, err := w.reserve(node, less)
		r.Sats = less
		return r, err
	}})
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: 1}}
	fc := newFakeCircuit(hops, nil)
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	if calls := fc.drain(); len(calls) != 1 || satsOf(calls[0].payload) != SatsFor(PrepayBytes, 1) {
		t.Fatalf("prepay calls %v, want one of the whole prepay", calls)
	}
	fc.add(20_000_000 / cell.Size)
	pc.Check()
	pc.wg.Wait()
	calls := fc.drain()
	mu.Lock()
	defer mu.Unlock()
	if len(calls) == 0 || len(asked) != len(calls) {
		t.Fatalf("calls %v, asked %v", calls, asked)
	}
	for i, c := range calls {
		if satsOf(c.payload) != max(asked[i]/2, 1) {
			t.Errorf("TOPUP %d paid %s, asked %d", i, c.payload, asked[i])
		}
	}
	if st := pc.Stats()[0]; st.Failures != 0 || st.Stopped || st.BytesPaid-int64(fc.HopBytes()[0]) < 0 {
		t.Fatalf("stats %+v (carried %d)", st, fc.HopBytes()[0])
	}
}
