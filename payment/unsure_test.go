package payment

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// TestTopUpOutcomeUnknown: a TOPUP that gets no answer (the hop may have
// redeemed it) hands its vouchers back as unsure, never as released, so
// the wallet settles them with the mint before offering any again; a
// refusal without a payload (the hop says it took nothing) releases them.
func TestTopUpOutcomeUnknown(t *testing.T) {
	t.Parallel()
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: 1}}
	for _, tc := range []struct {
		name       string
		answer     func(ctx context.Context, i int, payload string) ([]byte, error)
		wantUnsure bool
	}{
		{"timeout", blockUntilDone, true},
		{"circuit closed", func(context.Context, int, string) ([]byte, error) { return nil, circuit.ErrClosed }, true},
		{"refused without reason", func(context.Context, int, string) ([]byte, error) {
			return nil, circuit.ErrPayment
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newFakeWallet(map[peer.ID]uint64{"A": 1000})
			var unsure, released int
			cl := newTestClient(t, w, ClientConfig{
				TopUpTimeout: time.Second,
			})
			cl.cfg.Reserve = func(node peer.ID, sats uint64) (Reservation, error) {
				r, err := w.reserve(node, sats)
				if err != nil {
					return r, err
				}
				rel := r.Release
				r.Release = func() error { released++; return rel() }
				r.Unsure = func() error { unsure++; return nil }
				return r, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			_, err := cl.Open(ctx, newFakeCircuit(hops, tc.answer), hops)
			if err == nil {
				t.Fatal("prepay with no answer succeeded")
			}
			if tc.wantUnsure && (unsure != 1 || released != 0) {
				t.Fatalf("unsure %d, released %d; want the vouchers parked as unsure", unsure, released)
			}
			if !tc.wantUnsure && (unsure != 0 || released != 1) {
				t.Fatalf("unsure %d, released %d; want them released", unsure, released)
			}
			if errors.Is(err, ErrClosed) {
				t.Fatalf("err %v", err)
			}
		})
	}
}

// TestPaidCircuitCap: Open prepays at most MaxPaidCircuitsPerMinute
// circuits in a burst, then refuses with ErrRateLimited (paying nothing)
// until the bucket refills; a circuit with no paid hop is never counted.
func TestPaidCircuitCap(t *testing.T) {
	t.Parallel()
	w := newFakeWallet(rich())
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cl := newTestClient(t, w, ClientConfig{MaxPaidCircuitsPerMinute: 3, Now: clock})
	hops := testHops[:1]
	open := func() error {
		pc, err := cl.Open(context.Background(), newFakeCircuit(hops, nil), hops)
		if err == nil {
			pc.Close()
		}
		return err
	}
	for i := range 3 {
		if err := open(); err != nil {
			t.Fatalf("circuit %d: %v", i, err)
		}
	}
	_, spent, _ := w.snapshot()
	if err := open(); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("fourth circuit in the same minute: %v, want ErrRateLimited", err)
	}
	if _, spent2, _ := w.snapshot(); len(spent2) != len(spent) {
		t.Fatalf("a refused circuit paid: %d then %d payments", len(spent), len(spent2))
	}
	if pc, err := cl.Open(context.Background(), newFakeCircuit(hops, nil), nil); err != nil {
		t.Fatalf("unpaid circuit refused: %v", err)
	} else {
		pc.Close()
	}
	mu.Lock()
	now = now.Add(20 * time.Second) // one token back
	mu.Unlock()
	if err := open(); err != nil {
		t.Fatalf("after 20 s: %v", err)
	}
	if err := open(); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("second after 20 s: %v, want ErrRateLimited", err)
	}
}

// TestPaceHoldsReads: while a paid hop is nearly out of credit and its
// top-up is on the way, a wrapped stream's reads wait (no SENDME goes
// back, so the last hop cannot run past its grace); once the top-up
// lands, they go on.
//
// At 2 sat/MB (an exit) the prepay of 3 sats buys 1.5 MB and the hop's
// grace is as much, short of a stream window, so reads wait with more
// credit left than PaceBytes (paceBytes) until the first top-up lands.
func TestPaceHoldsReads(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		price uint64
		left  int64 // credit left when the read starts
	}{
		{1, PaceBytes / 2},
		{2, (PaceBytes + paceBytes(CreditBytes(SatsFor(PrepayBytes, 2), 2), SessionGraceBytes)) / 2},
	} {
		t.Run(fmt.Sprintf("%d sat per MB, %d bytes left", tc.price, tc.left), func(t *testing.T) {
			t.Parallel()
			testPaceHoldsReads(t, tc.price, tc.left)
		})
	}
}

func testPaceHoldsReads(t *testing.T, price uint64, left int64) {
	w := newFakeWallet(rich())
	cl := newTestClient(t, w, ClientConfig{})
	hops := []Hop{{Index: 0, Peer: "A", PriceSatPerMB: price}}
	release := make(chan struct{})
	var gated atomicBool
	fc := newFakeCircuit(hops, nil)
	fc.answer = func(ctx context.Context, i int, p string) ([]byte, error) {
		if gated.get() {
			select {
			case <-release:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return fc.honest(i, p)
	}
	pc, err := cl.Open(context.Background(), fc, hops)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	fc.drain()
	gated.set(true)
	st := pc.Stats()[0]
	fc.add(uint64(st.BytesPaid-int64(fc.HopBytes()[0])-left)/cell.Size + 1) // less than left of credit left
	srv, cli := net.Pipe()
	t.Cleanup(func() { srv.Close(); cli.Close() })
	conn := pc.Wrap(cli)
	go srv.Write([]byte("x"))
	done := make(chan error, 1)
	go func() {
		_, err := conn.Read(make([]byte, 1))
		done <- err
	}()
	<-fc.calls // the top-up is on its way, unanswered
	select {
	case err := <-done:
		t.Fatalf("read returned (%v) while the hop was out of credit and its top-up unanswered", err)
	default:
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("read after the top-up landed: %v", err)
	}
}

type atomicBool struct {
	mu sync.Mutex
	v  bool
}

func (b *atomicBool) get() bool  { b.mu.Lock(); defer b.mu.Unlock(); return b.v }
func (b *atomicBool) set(v bool) { b.mu.Lock(); b.v = v; b.mu.Unlock() }
