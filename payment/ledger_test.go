package payment

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// redeemer is a fake mint: each payload is worth sats, and err is returned
// with them.
type redeemer struct {
	sats  uint64
	err   error
	calls atomic.Int64
}

func (r *redeemer) redeem(ctx context.Context, payload []byte) (uint64, error) {
	r.calls.Add(1)
	return r.sats, r.err
}

// fakeClock is a clock tests move by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestLedger(t *testing.T, cfg LedgerConfig) *Ledger {
	t.Helper()
	if cfg.Redeem == nil {
		cfg.Redeem = (&redeemer{sats: 1}).redeem
	}
	l, err := NewLedger(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func ck(b byte) [cell.CookieLen]byte { return [cell.CookieLen]byte{b} }

// ackOf parses a TopUp answer.
func ackOf(t *testing.T, ans []byte) Ack {
	t.Helper()
	var a Ack
	if err := a.UnmarshalBinary(ans); err != nil {
		t.Fatalf("TopUp answer %x: %v", ans, err)
	}
	return a
}

func TestNewLedgerConfig(t *testing.T) {
	t.Parallel()
	ok := (&redeemer{}).redeem
	for _, tc := range []struct {
		name string
		cfg  LedgerConfig
	}{
		{"no Redeem", LedgerConfig{PriceSatPerMB: 1}},
		{"negative grace", LedgerConfig{Redeem: ok, GraceBytes: -1}},
		{"grace above cap", LedgerConfig{Redeem: ok, GraceBytes: MaxAllowanceBytes + 1}},
		{"negative StaleAfter", LedgerConfig{Redeem: ok, StaleAfter: -time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewLedger(tc.cfg); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}

func TestLedgerGraceThenRefusal(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grace int64 // configured
		want  int64 // effective
	}{
		{"default", 0, SessionGraceBytes},
		{"one cell", cell.Size, cell.Size},
		{"ten cells and a bit", 10*cell.Size + 100, 10*cell.Size + 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newTestLedger(t, LedgerConfig{PriceSatPerMB: 2, GraceBytes: tc.grace})
			a, b := ck(1), ck(2)
			cells := int(tc.want / cell.Size)
			for i := range cells {
				if err := l.Account(a, cell.Size); err != nil {
					t.Fatalf("cell %d within grace refused: %v", i, err)
				}
			}
			err := l.Account(a, cell.Size)
			if !errors.Is(err, circuit.ErrPayment) || !errors.Is(err, ErrExhausted) {
				t.Fatalf("cell past grace: err = %v, want ErrPayment and ErrExhausted", err)
			}
			s, _ := l.Session(a)
			if s.Allowance != -int64(cells)*cell.Size || !s.Refused || s.BytesCharged != uint64(cells)*cell.Size {
				t.Fatalf("after refusal: %+v (a refused cell is not charged)", s)
			}
			if err := l.Account(b, cell.Size); err != nil {
				t.Fatalf("another session is charged separately: %v", err)
			}
			// A TOPUP (1 sat at 2 sat/MB = 500,000 bytes) lets it go on.
			ans, err := l.TopUp(context.Background(), a, []byte("batch"))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := ackOf(t, ans), (Ack{CreditedSat: 1, Allowance: 500_000 - int64(cells)*cell.Size, Charged: uint64(cells) * cell.Size}); got != want {
				t.Fatalf("answered %+v, want %+v", got, want)
			}
			if err := l.Account(a, cell.Size); err != nil {
				t.Fatalf("after top-up: %v", err)
			}
			if st := l.Stats(); st.Total.Refused != 1 {
				t.Fatalf("Refused = %d, want 1", st.Total.Refused)
			}
		})
	}
}

func TestLedgerHostileAccount(t *testing.T) {
	t.Parallel()
	l := newTestLedger(t, LedgerConfig{PriceSatPerMB: 1})
	if err := l.Account(ck(1), -1<<40); err != nil {
		t.Fatalf("negative bytes: %v", err)
	}
	if s, _ := l.Session(ck(1)); s.Allowance != 0 || s.BytesCharged != 0 {
		t.Fatalf("negative bytes changed the session: %+v", s)
	}
	if err := l.Account(ck(1), int(^uint(0)>>1)); !errors.Is(err, circuit.ErrPayment) {
		t.Fatalf("MaxInt bytes: err = %v, want ErrPayment", err)
	}
}

func TestLedgerFreeHop(t *testing.T) {
	t.Parallel()
	l := newTestLedger(t, LedgerConfig{PriceSatPerMB: 0})
	for range 3 {
		if err := l.Account(ck(1), 1<<40); err != nil {
			t.Fatalf("a free hop refused: %v", err)
		}
	}
	ans, err := l.TopUp(context.Background(), ck(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ackOf(t, ans).Allowance; got != MaxAllowanceBytes {
		t.Fatalf("free hop: allowance %d, want MaxAllowanceBytes", got)
	}
}

func TestLedgerTopUpCredit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		price, sats   uint64
		topUps        int
		wantAllowance int64
	}{
		{"1 sat/MB", 1, 9, 1, 9_000_000},
		{"2 sat/MB, two top-ups", 2, 17, 2, 17_000_000},
		{"3 sat/MB rounds down", 3, 1, 1, 333_333},
		{"10^6 sat/MB", 1_000_000, 5, 1, 5},
		{"2*10^6 sat/MB (old bytesPerSat was 0)", 2_000_000, 16_777_216, 1, 8 << 20},
		{"huge sats capped", 1, 1 << 63, 1, MaxAllowanceBytes},
		{"cap holds over many top-ups", 1, 1 << 63, 3, MaxAllowanceBytes},
		{"huge price", 1 << 62, 1 << 62, 1, 1_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &redeemer{sats: tc.sats}
			l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: tc.price})
			c := ck(7)
			if err := l.Account(c, 0); err != nil { // opens the session
				t.Fatal(err)
			}
			var ans []byte
			for range tc.topUps {
				var err error
				if ans, err = l.TopUp(context.Background(), c, []byte("batch")); err != nil {
					t.Fatal(err)
				}
			}
			if got := ackOf(t, ans).Allowance; got != tc.wantAllowance {
				t.Errorf("answered %d, want %d", got, tc.wantAllowance)
			}
			s, ok := l.Session(c)
			if !ok || s.Allowance != tc.wantAllowance || s.TopUps != uint64(tc.topUps) || s.SatsRedeemed != tc.sats*uint64(tc.topUps) {
				t.Errorf("session %+v, want allowance %d after %d top-ups", s, tc.wantAllowance, tc.topUps)
			}
		})
	}
}

func TestLedgerTopUpRefusals(t *testing.T) {
	t.Parallel()
	errBad := errors.New("forged voucher")
	for _, tc := range []struct {
		name        string
		sats        uint64
		redeemErr   error
		open        bool
		wantErr     error // nil: success
		wantRedeems int64
		wantCredit  int64
	}{
		{"unknown session", 5, nil, false, ErrUnknownSession, 0, 0},
		{"all refused", 0, errBad, true, ErrNothingCredited, 1, 0},
		{"worth nothing", 0, nil, true, ErrNothingCredited, 1, 0},
		{"partly refused: the good ones count", 5, errBad, true, nil, 1, 5_000_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &redeemer{sats: tc.sats, err: tc.redeemErr}
			l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 1})
			if tc.open {
				_ = l.Account(ck(1), 0)
			}
			_, err := l.TopUp(context.Background(), ck(1), []byte("batch"))
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.redeemErr != nil && tc.wantErr != nil && !errors.Is(err, tc.redeemErr) {
				t.Errorf("err = %v does not wrap Redeem's error", err)
			}
			if got := r.calls.Load(); got != tc.wantRedeems {
				t.Errorf("Redeem called %d times, want %d", got, tc.wantRedeems)
			}
			if s, _ := l.Session(ck(1)); s.Allowance != tc.wantCredit {
				t.Errorf("allowance %d, want %d", s.Allowance, tc.wantCredit)
			}
			if _, ok := l.Session(ck(1)); ok != tc.open {
				t.Errorf("TopUp created a session")
			}
		})
	}
}

// TestLedgerTopUpRacesClose: a circuit that ends while its TOPUP is being
// redeemed leaves no entry behind, and the spent sats still count.
func TestLedgerTopUpRacesClose(t *testing.T) {
	t.Parallel()
	entered, proceed := make(chan struct{}), make(chan struct{})
	redeem := func(ctx context.Context, _ []byte) (uint64, error) {
		close(entered)
		<-proceed
		return 3, nil
	}
	l := newTestLedger(t, LedgerConfig{Redeem: redeem, PriceSatPerMB: 1})
	_ = l.Account(ck(1), cell.Size)
	l.NoteService(ck(1), cell.ServiceMempool)
	type result struct {
		ans []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		ans, err := l.TopUp(context.Background(), ck(1), nil)
		done <- result{ans, err}
	}()
	<-entered
	l.Closed(ck(1))
	close(proceed)
	res := <-done
	if res.err != nil || ackOf(t, res.ans).CreditedSat != 3 {
		t.Fatalf("TopUp = %x, %v; want 3 sats credited, nil", res.ans, res.err)
	}
	if _, ok := l.Session(ck(1)); ok {
		t.Fatal("a TopUp after Closed recreated the session")
	}
	st := l.Stats().Roles["mempool"]
	if st.SatsRedeemed != 3 || st.TopUps != 1 || st.Open != 0 || st.Sessions != 1 || st.BytesCharged != cell.Size {
		t.Fatalf("mempool stats %+v", st)
	}
}

func TestLedgerStatsByRole(t *testing.T) {
	t.Parallel()
	l := newTestLedger(t, LedgerConfig{Redeem: (&redeemer{sats: 2}).redeem, PriceSatPerMB: 1})
	ctx := context.Background()
	type step struct {
		cookie byte
		svc    *cell.Service // NoteService
		cells  int
		topUps int
		close  bool
	}
	exit, mempool, rdv := cell.ServiceExit, cell.ServiceMempool, cell.ServiceRendezvous
	steps := []step{
		{cookie: 1, cells: 3},                                        // relay, open
		{cookie: 2, cells: 1, topUps: 1, close: true},                // relay, closed
		{cookie: 3, svc: &exit, cells: 2, topUps: 2},                 // exit, open
		{cookie: 4, svc: &exit, cells: 5, close: true},               // exit, closed
		{cookie: 5, svc: &mempool, cells: 1, topUps: 1},              // mempool
		{cookie: 6, svc: &rdv, cells: 1},                             // rendezvous
		{cookie: 7, svc: &mempool, cells: 1},                         // first service wins:
		{cookie: 7, svc: &exit},                                      // stays mempool
		{cookie: 8, svc: &exit},                                      // no session: ignored
		{cookie: 9, cells: 1, close: true}, {cookie: 9, close: true}, // Closed twice
	}
	for _, s := range steps {
		c := ck(s.cookie)
		for range s.cells {
			if err := l.Account(c, cell.Size); err != nil {
				t.Fatal(err)
			}
		}
		if s.svc != nil {
			l.NoteService(c, *s.svc)
		}
		for range s.topUps {
			if _, err := l.TopUp(ctx, c, nil); err != nil {
				t.Fatal(err)
			}
		}
		if s.close {
			l.Closed(c)
		}
	}
	want := map[string]RoleStats{
		RoleRelay:    {Open: 1, Sessions: 3, BytesCharged: 5 * cell.Size, SatsRedeemed: 2, TopUps: 1},
		"exit":       {Open: 1, Sessions: 2, BytesCharged: 7 * cell.Size, SatsRedeemed: 4, TopUps: 2},
		"mempool":    {Open: 2, Sessions: 2, BytesCharged: 2 * cell.Size, SatsRedeemed: 2, TopUps: 1},
		"rendezvous": {Open: 1, Sessions: 1, BytesCharged: 1 * cell.Size},
	}
	st := l.Stats()
	if len(st.Roles) != len(want) {
		t.Errorf("roles %v, want %v", st.Roles, want)
	}
	var total RoleStats
	for role, w := range want {
		if got := st.Roles[role]; got != w {
			t.Errorf("role %s: %+v, want %+v", role, got, w)
		}
		total.add(w)
	}
	if st.Total != total {
		t.Errorf("total %+v, want %+v", st.Total, total)
	}
	if s, ok := l.Session(ck(7)); !ok || s.Role != "mempool" {
		t.Errorf("session 7: %+v, %v", s, ok)
	}
	for _, c := range []byte{2, 4, 8, 9} {
		if _, ok := l.Session(ck(c)); ok {
			t.Errorf("session %d still held", c)
		}
	}
}

func TestLedgerDropsStaleSessions(t *testing.T) {
	t.Parallel()
	clk := &fakeClock{}
	l := newTestLedger(t, LedgerConfig{PriceSatPerMB: 1, StaleAfter: time.Hour, Now: clk.now})
	_ = l.Account(ck(1), cell.Size) // its SessionClosed never comes
	_ = l.Account(ck(2), cell.Size)
	clk.advance(40 * time.Minute)
	_ = l.Account(ck(2), cell.Size) // sweeps, but nothing is an hour old
	if _, ok := l.Session(ck(1)); !ok {
		t.Fatal("a session quiet for 40 minutes was dropped")
	}
	clk.advance(30 * time.Minute)
	_ = l.Account(ck(3), cell.Size)
	if _, ok := l.Session(ck(1)); ok {
		t.Fatal("a session quiet for 70 minutes is still held")
	}
	if s, ok := l.Session(ck(2)); !ok || !s.Opened.Equal(time.Unix(0, 0)) || !s.LastCell.Equal(time.Unix(0, int64(40*time.Minute))) {
		t.Fatalf("session 2: %+v, %v", s, ok)
	}
	if st := l.Stats().Total; st.Open != 2 || st.Sessions != 3 || st.BytesCharged != 4*cell.Size {
		t.Fatalf("total %+v", st)
	}
}

// TestLedgerConcurrent runs Account, TopUp, NoteService, Stats and Closed
// from many goroutines (run with -race) and checks nothing is lost.
func TestLedgerConcurrent(t *testing.T) {
	t.Parallel()
	const (
		sessions = 8
		cells    = 500
		topUps   = 20
	)
	l := newTestLedger(t, LedgerConfig{Redeem: (&redeemer{sats: 1}).redeem, PriceSatPerMB: 1, GraceBytes: 1 << 30})
	var wg sync.WaitGroup
	for i := range sessions {
		c := ck(byte(i + 1))
		_ = l.Account(c, 0)
		wg.Go(func() {
			for range cells {
				if err := l.Account(c, cell.Size); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for range topUps {
				if _, err := l.TopUp(context.Background(), c, nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			l.NoteService(c, cell.Service(i%3))
			_ = l.Stats()
			other := ck(byte(100 + i))
			_ = l.Account(other, cell.Size)
			l.Closed(other)
		})
	}
	wg.Wait()
	for i := range sessions {
		s, ok := l.Session(ck(byte(i + 1)))
		if want := int64(topUps*1_000_000 - cells*cell.Size); !ok || s.Allowance != want {
			t.Errorf("session %d: %+v, want allowance %d", i+1, s, want)
		}
	}
	st := l.Stats().Total
	want := RoleStats{Open: sessions, Sessions: 2 * sessions, BytesCharged: sessions * (cells + 1) * cell.Size, SatsRedeemed: sessions * topUps, TopUps: sessions * topUps}
	if st != want {
		t.Errorf("total %+v, want %+v", st, want)
	}
}

// A session is priced at the relay price until a BEGIN names a service on
// it; from then on it pays that service's price, and its allowance is what
// it redeemed at that price less what it was charged: the client's figure
// for a last hop it prices by its role from the start.
func TestLedgerPricesByRole(t *testing.T) {
	t.Parallel()
	prices := map[cell.Service]uint64{cell.ServiceExit: 4, cell.ServiceMempool: 2}
	for _, tc := range []struct {
		name          string
		svc           cell.Service
		noted         bool
		wantAllowance int64
	}{
		{"middle pays the relay price", 0, false, 8_000_000 - 1000},
		{"exit pays the exit price", cell.ServiceExit, true, 2_000_000 - 1000 - 500},
		{"mempool pays the mempool price", cell.ServiceMempool, true, 4_000_000 - 1000 - 500},
		{"unlisted service keeps the relay price", cell.ServiceRendezvous, true, 8_000_000 - 1000 - 500},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := &redeemer{sats: 8}
			l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 1, ServicePrices: prices})
			c := ck(3)
			if err := l.Account(c, 1000); err != nil { // CREATE: opens the session
				t.Fatal(err)
			}
			ans, err := l.TopUp(context.Background(), c, []byte("batch"))
			if err != nil {
				t.Fatal(err)
			}
			if got := ackOf(t, ans).Allowance; got != 8_000_000-1000 {
				t.Errorf("allowance before any BEGIN %d, want %d (relay price)", got, 8_000_000-1000)
			}
			if tc.noted {
				l.NoteService(c, tc.svc)
				if err := l.Account(c, 500); err != nil {
					t.Fatal(err)
				}
			}
			s, ok := l.Session(c)
			if !ok || s.Allowance != tc.wantAllowance {
				t.Errorf("session %+v, want allowance %d", s, tc.wantAllowance)
			}
		})
	}
	t.Run("relay dearer than exit: the lowest price until a BEGIN", func(t *testing.T) {
		t.Parallel()
		r := &redeemer{sats: 6}
		l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 3,
			ServicePrices: map[cell.Service]uint64{cell.ServiceExit: 2, cell.ServiceMempool: 6}})
		c := ck(5)
		if err := l.Account(c, 1000); err != nil {
			t.Fatal(err)
		}
		ans, err := l.TopUp(context.Background(), c, []byte("batch"))
		if err != nil {
			t.Fatal(err)
		}
		// A client prepaying its exit at 2 sat/MB expects 3,000,000 bytes
		// held before any BEGIN; one paying a middle at 3 expects less.
		if a := ackOf(t, ans); a.Allowance+int64(a.Charged) != 3_000_000 {
			t.Errorf("held %d bytes before any BEGIN, want 3000000 (the lowest price)", a.Allowance+int64(a.Charged))
		}
		l.NoteService(c, cell.ServiceMempool)
		if s, _ := l.Session(c); s.Allowance != 1_000_000-1000 {
			t.Errorf("allowance after a mempool BEGIN %d, want %d", s.Allowance, 1_000_000-1000)
		}
	})
	// Found in review: the first BEGIN fixed the session's price, so a
	// client could BEGIN a cheap (or unpriced) service first and then use
	// a dear one on the same circuit at the cheap price: an exit, a Tor
	// gateway at the relay price.
	for _, first := range []cell.Service{cell.ServiceMint, cell.ServiceRendezvous, cell.ServiceMempool} {
		t.Run("a cheaper BEGIN first does not lower the exit price: "+first.String(), func(t *testing.T) {
			t.Parallel()
			r := &redeemer{sats: 8}
			l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 1, ServicePrices: prices})
			c := ck(6)
			if err := l.Account(c, 1000); err != nil {
				t.Fatal(err)
			}
			if _, err := l.TopUp(context.Background(), c, []byte("batch")); err != nil {
				t.Fatal(err)
			}
			l.NoteService(c, first)
			l.NoteService(c, cell.ServiceExit)
			if err := l.Account(c, 500); err != nil {
				t.Fatal(err)
			}
			if s, _ := l.Session(c); s.Allowance != 2_000_000-1000-500 {
				t.Errorf("allowance %d after BEGIN %v then exit, want %d (the exit price)", s.Allowance, first, 2_000_000-1000-500)
			}
			// A cheaper service after the exit does not lower it either.
			l.NoteService(c, first)
			if s, _ := l.Session(c); s.Allowance != 2_000_000-1000-500 {
				t.Errorf("allowance %d after a cheaper BEGIN following the exit, want %d", s.Allowance, 2_000_000-1000-500)
			}
		})
	}
	t.Run("repriced into debt is refused past grace", func(t *testing.T) {
		t.Parallel()
		r := &redeemer{sats: 1}
		l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 1, GraceBytes: 1000,
			ServicePrices: map[cell.Service]uint64{cell.ServiceExit: 1_000_000}})
		c := ck(4)
		if err := l.Account(c, 500); err != nil {
			t.Fatal(err)
		}
		if _, err := l.TopUp(context.Background(), c, []byte("batch")); err != nil {
			t.Fatal(err)
		}
		l.NoteService(c, cell.ServiceExit) // 1 sat buys 1 byte: 499 bytes in debt
		if s, _ := l.Session(c); s.Allowance != -499 {
			t.Errorf("allowance after repricing %d, want -499", s.Allowance)
		}
		if err := l.Account(c, 600); !errors.Is(err, circuit.ErrPayment) {
			t.Errorf("Account in debt past grace: %v, want ErrPayment", err)
		}
	})
}

// TestMintOnlySessionStaysFree: a mint-only session (Prepay) keeps price 0
// when its BEGIN mint is noted, now that NoteService raises prices on later
// BEGINs: its cells are capped by the engine, not the ledger.
func TestMintOnlySessionStaysFree(t *testing.T) {
	t.Parallel()
	r := &redeemer{sats: 8}
	l := newTestLedger(t, LedgerConfig{Redeem: r.redeem, PriceSatPerMB: 1, GraceBytes: 1000})
	c := ck(7)
	if st, _ := l.Prepay(context.Background(), c, "", cell.Offer{Kind: cell.OfferMintOnly}); st != cell.AnswerMintOnly {
		t.Fatalf("mint-only request answered %v", st)
	}
	l.NoteService(c, cell.ServiceMint)
	for i := 0; i < 64; i++ {
		if err := l.Account(c, cell.Size); err != nil {
			t.Fatalf("cell %d of a mint-only circuit refused: %v", i, err)
		}
	}
}

// TestPrepaidGraceNeverExceedsPayment: a session opened by a handshake
// payment may run into debt by at most what its vouchers bought, up to
// GraceBytes. Found in review: any credit opened the full 2 MiB grace, so
// a client that offered one 1-sat voucher per circuit and never topped up
// got 1 MB paid plus 2 MiB free (3x at 1 sat/MB, 5x at an exit's 2), at
// the CREATE rate. An honest client prepays PrepayBytes, so that its
// credit plus the grace it gets covers one stream window and 128 cells
// (schedule.go).
func TestPrepaidGraceNeverExceedsPayment(t *testing.T) {
	t.Parallel()
	offer := cell.Offer{Kind: cell.OfferVouchers, Batch: []byte("batch")}
	t.Run("one sat", func(t *testing.T) {
		t.Parallel()
		l := newTestLedger(t, LedgerConfig{Redeem: (&redeemer{sats: 1}).redeem, PriceSatPerMB: 1})
		c := ck(8)
		if st, _ := l.Prepay(context.Background(), c, "", offer); st != cell.AnswerPaid {
			t.Fatalf("handshake payment answered %v", st)
		}
		// 1 sat buys 1,000,000 bytes; the grace is another 1,000,000.
		if err := l.Account(c, 2_000_000); err != nil {
			t.Fatalf("paid bytes plus a grace of as much: %v", err)
		}
		if err := l.Account(c, 1); !errors.Is(err, circuit.ErrPayment) {
			t.Fatalf("a byte past the paid amount in debt: %v, want ErrPayment", err)
		}
	})
	for i, price := range []uint64{1, 2, 3, 1000} {
		t.Run(fmt.Sprintf("an honest prepay covers a stream window at %d sat per MB", price), func(t *testing.T) {
			t.Parallel()
			sats := SatsFor(PrepayBytes, price)
			l := newTestLedger(t, LedgerConfig{Redeem: (&redeemer{sats: sats}).redeem, PriceSatPerMB: price})
			c := ck(byte(9 + i))
			if st, _ := l.Prepay(context.Background(), c, "", offer); st != cell.AnswerPaid {
				t.Fatalf("handshake payment answered %v", st)
			}
			credit := CreditBytes(sats, price)
			room := credit + min(credit, SessionGraceBytes)
			if room < SessionGraceBytes+128*cell.Size {
				t.Fatalf("%d sats: credit %d plus grace is %d bytes, less than a stream window and 128 cells", sats, credit, room)
			}
			if err := l.Account(c, int(room)); err != nil {
				t.Fatalf("prepaid bytes plus their grace: %v", err)
			}
			if err := l.Account(c, 1); !errors.Is(err, circuit.ErrPayment) {
				t.Fatalf("a byte past credit and grace: %v, want ErrPayment", err)
			}
		})
	}
}
