package payment

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p"
)

// loopbackEngine starts a libp2p host on 127.0.0.1 and a circuit engine
// with an onion key on it, both closed in t.Cleanup.
func loopbackEngine(t *testing.T, cfg circuit.Config) (*circuit.Engine, circuit.HopInfo) {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	key, err := circuit.GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.OnionKey = h, key
	e, err := circuit.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Close()
		_ = h.Close()
	})
	return e, circuit.HopInfo{Peer: h.ID(), Addrs: h.Addrs(), OnionKey: key.Public()}
}

// TestLedgerTopUpRacesDestroy: a TOPUP still being redeemed when DESTROY
// arrives leaves no session in the ledger, through a real circuit engine:
// the engine charges nothing (not the TOPUP_ACK it then tries to send,
// nor any late cell) to a session it has closed.
func TestLedgerTopUpRacesDestroy(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	entered, proceed := make(chan struct{}), make(chan struct{})
	redeem := func(context.Context, []byte) (uint64, error) {
		close(entered)
		<-proceed
		return 3, nil
	}
	l := newTestLedger(t, LedgerConfig{Redeem: redeem, PriceSatPerMB: 1})
	relay, hop := loopbackEngine(t, circuit.Config{Account: l.Account, TopUp: l.TopUp, SessionClosed: l.Closed})
	client, _ := loopbackEngine(t, circuit.Config{})
	c, err := client.Build(ctx, []circuit.HopInfo{hop})
	if err != nil {
		t.Fatal(err)
	}
	cookie := c.Cookie(0)
	topped := make(chan error, 1)
	go func() {
		_, err := c.TopUp(ctx, 0, []byte("batch"))
		topped <- err
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the TOPUP never reached Redeem")
	}
	_ = c.Close() // DESTROY while Redeem runs
	for {
		if _, open := l.Session(cookie); !open {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("DESTROY did not close the session")
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(proceed)
	if err := <-topped; err == nil {
		t.Fatal("TopUp on a destroyed circuit succeeded")
	}
	// Close waits for every engine goroutine, the TOPUP's included.
	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	if st, open := l.Session(cookie); open {
		t.Fatalf("a session is left behind: %+v", st)
	}
	st := l.Stats().Total
	if st.Open != 0 || st.Sessions != 1 || st.SatsRedeemed != 3 {
		t.Fatalf("ledger totals %+v; want no open session, one session, 3 sats", st)
	}
}

// TestLedgerFreeHopNeverOverflows: at price 0 (payments on, nothing
// charged) any credit fills the allowance to MaxAllowanceBytes and
// repeated top-ups of the largest sats keep it there; no sum wraps.
func TestLedgerFreeHopNeverOverflows(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		sats   uint64
		grace  int64
		charge int
	}{
		{"one sat", 1, 0, cell.Size},
		{"max sats", math.MaxUint64, 0, cell.Size},
		{"max sats, max grace, huge cells", math.MaxUint64, MaxAllowanceBytes, 1 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := CreditBytes(tc.sats, 0); got != MaxAllowanceBytes {
				t.Fatalf("CreditBytes(%d, 0) = %d, want MaxAllowanceBytes", tc.sats, got)
			}
			l := newTestLedger(t, LedgerConfig{Redeem: (&redeemer{sats: tc.sats}).redeem, GraceBytes: tc.grace})
			for range 4 {
				if err := l.Account(ck(1), tc.charge); err != nil {
					t.Fatalf("a free hop refused a cell: %v", err)
				}
				if _, err := l.TopUp(context.Background(), ck(1), []byte("batch")); err != nil {
					t.Fatal(err)
				}
				s, ok := l.Session(ck(1))
				if !ok || s.Allowance != MaxAllowanceBytes {
					t.Fatalf("allowance %d (open %v), want MaxAllowanceBytes", s.Allowance, ok)
				}
			}
		})
	}
}
