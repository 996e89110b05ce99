package payment

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
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
