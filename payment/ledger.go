package payment

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// LedgerConfig configures a Ledger. Redeem is required; zero fields take
// the default named in their comment.
type LedgerConfig struct {
	// Redeem redeems a voucher batch (a TOPUP payload, VOUCHERS.md §2.1)
	// and returns the sats to credit. It must have written and synced the
	// spent set before it returns. It may return sats > 0 together with an
	// error when some vouchers were refused: the good ones are spent and
	// are credited. Node passes mint.RedeemPayload.
	Redeem func(ctx context.Context, payload []byte) (sats uint64, err error)
	// PriceSatPerMB is this hop's relay price in sat per 10^6 bytes, as
	// clients price a guard or middle hop. A session pays the lowest of it
	// and ServicePrices until a BEGIN names a service on it (NoteService):
	// the hop cannot tell a middle from a last hop before that, and a
	// client prepays its last hop at the final role's price before any
	// BEGIN, so no price it may be owed is ever above the one it credits
	// (the client would take a dearer credit for over-charging). 0 means
	// free: sessions are metered but never refused, and any redeemed sats
	// buy MaxAllowanceBytes.
	PriceSatPerMB uint64
	// ServicePrices is the price in sat per 10^6 bytes of a session that
	// serves a service (the hop is the circuit's last hop, in the role of
	// that service: exit, mempool, rendezvous), as clients price the last
	// hop by its role. A service not listed pays PriceSatPerMB. When
	// NoteService reprices a session, its allowance is recomputed as
	// everything it redeemed at the new price less everything it was
	// charged, the figure the client holds. Nil: every session pays
	// PriceSatPerMB.
	ServicePrices map[cell.Service]uint64
	// GraceBytes is how far, in bytes, a session may run into debt before
	// its cells are refused. 0 takes SessionGraceBytes; it must not be
	// negative or above MaxAllowanceBytes.
	GraceBytes int64
	// StaleAfter drops a session that saw no cell for this long. A live
	// circuit never goes that quiet: the circuit engine destroys relayed
	// circuits idle for its Limits.IdleTimeout (default 10m), and clients
	// send keep-alives. It only catches a session whose last cell raced its
	// SessionClosed. Keep it above the engine's IdleTimeout. Default 1h.
	StaleAfter time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the ledger's logs; nil discards them. The ledger
	// adds subsys=payment/ledger. It never logs cookies.
	Logger *slog.Logger
}

// Ledger is a paid hop's session ledger (PROTOCOL.md §4.3, §5.3): one
// prepaid byte allowance per session cookie. TopUp redeems vouchers into
// the allowance; Account charges every relayed cell against it. A session
// may run GraceBytes into debt (so circuit setup and the first TOPUP can
// flow, and top-ups sent while data is in flight arrive in time); beyond
// that Account refuses and the engine destroys the circuit with reason
// payment. The ledger is memory only: a hop that restarts loses its
// circuits and what they had prepaid (a few MB by design).
//
// Bounded: there is one entry per live relayed circuit, created by its
// first Account and removed by Closed, so the circuit engine's
// Limits.MaxCircuits bounds the ledger; TopUp and NoteService never create
// entries, and StaleAfter removes an entry whose circuit ended without a
// matching Closed. Per-role totals have one key per role.
//
// All methods are safe for concurrent use.
type Ledger struct {
	redeem     func(ctx context.Context, payload []byte) (uint64, error)
	price      uint64 // relay price: a service not in svcPrices
	svcPrices  map[cell.Service]uint64
	startPrice uint64 // a session's price before NoteService: the lowest of price and svcPrices
	grace      int64
	staleAfter time.Duration
	now        func() time.Time
	log        *slog.Logger

	mu sync.Mutex
	// sessions is guarded by mu: one entry per live relayed circuit (see
	// Ledger).
	sessions map[[cell.CookieLen]byte]*session
	// ended is guarded by mu: the totals of sessions that have left
	// sessions, by role; Open is always 0 here.
	ended map[string]RoleStats
	// lastSweep is guarded by mu: when Account last looked for stale
	// entries.
	lastSweep time.Time
}

// session is one entry of Ledger.sessions; every field is guarded by
// Ledger.mu.
type session struct {
	allowance int64  // bytes; not above MaxAllowanceBytes, below -grace only after repricing (NoteService)
	role      string // "" until NoteService: RoleRelay
	price     uint64 // sat per 10^6 bytes: Ledger.startPrice until NoteService
	charged   uint64 // bytes accounted
	sats      uint64 // sats redeemed
	topUps    uint64 // TOPUPs that credited something
	refused   bool   // Account has refused it
	mintOnly  bool   // opened by Prepay for a mint-only circuit: price 0 for good
	prepaid   bool   // opened by a handshake payment: its grace is at most what its sats buy
	opened    time.Time
	seen      time.Time // last Account
}

func (s *session) roleName() string {
	if s.role == "" {
		return RoleRelay
	}
	return s.role
}

// NewLedger returns an empty ledger, or an error wrapping ErrConfig that
// names the bad field.
func NewLedger(cfg LedgerConfig) (*Ledger, error) {
	if cfg.Redeem == nil {
		return nil, fmt.Errorf("%w: LedgerConfig.Redeem is required", ErrConfig)
	}
	if cfg.GraceBytes < 0 || cfg.GraceBytes > MaxAllowanceBytes {
		return nil, fmt.Errorf("%w: LedgerConfig.GraceBytes %d is outside 0..%d", ErrConfig, cfg.GraceBytes, int64(MaxAllowanceBytes))
	}
	if cfg.StaleAfter < 0 {
		return nil, fmt.Errorf("%w: LedgerConfig.StaleAfter %v is negative", ErrConfig, cfg.StaleAfter)
	}
	if cfg.GraceBytes == 0 {
		cfg.GraceBytes = SessionGraceBytes
	}
	if cfg.StaleAfter == 0 {
		cfg.StaleAfter = time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Ledger{
		redeem:     cfg.Redeem,
		price:      cfg.PriceSatPerMB,
		svcPrices:  maps.Clone(cfg.ServicePrices),
		startPrice: lowestPrice(cfg.PriceSatPerMB, cfg.ServicePrices),
		grace:      cfg.GraceBytes,
		staleAfter: cfg.StaleAfter,
		now:        cfg.Now,
		log:        cfg.Logger.With("subsys", "payment/ledger"),
		sessions:   make(map[[cell.CookieLen]byte]*session),
		ended:      make(map[string]RoleStats),
		lastSweep:  cfg.Now(),
	}, nil
}

// Account is circuit.Config.Account: it charges bytes (one relayed cell)
// to the session and refuses, with an error wrapping ErrExhausted and
// circuit.ErrPayment, a cell that would take the session more than
// GraceBytes into debt (a session opened by Prepay: at most what its sats
// buy, if that is less); a refused cell is not charged. The first Account
// of a cookie opens its session. It never blocks on I/O: it takes one
// mutex, and every StaleAfter/2 scans the ledger once for stale entries.
func (l *Ledger) Account(cookie [cell.CookieLen]byte, bytes int) error {
	n := int64(max(bytes, 0))
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.staleAfter/2 {
		l.sweepLocked(now)
	}
	s := l.sessions[cookie]
	if s == nil {
		s = &session{opened: now, price: l.startPrice}
		l.sessions[cookie] = s
	}
	s.seen = now
	if s.price != 0 {
		grace := l.grace
		if s.prepaid {
			// Never more debt than the session's sats buy: one small
			// voucher must not open the whole grace.
			grace = min(grace, CreditBytes(s.sats, s.price))
		}
		if n > MaxAllowanceBytes || s.allowance-n < -grace {
			if !s.refused {
				s.refused = true
				l.log.Debug("session refused: prepaid allowance and grace spent", "role", s.roleName())
			}
			return fmt.Errorf("%w: %w", ErrExhausted, circuit.ErrPayment)
		}
		s.allowance -= n
	}
	s.charged += uint64(n)
	return nil
}

// TopUp is circuit.Config.TopUp: it redeems the voucher batch in payload
// through LedgerConfig.Redeem (the spent set is synced before that
// returns), credits CreditBytes(sats, PriceSatPerMB) to the session, and
// answers an Ack (PROTOCOL.md §5.3): the sats credited, the allowance
// after crediting, the bytes charged so far and, when a voucher was
// refused, the reason (reasonFor of Redeem's error). If Redeem credits
// some sats and refuses other vouchers, the sats are credited and TopUp
// succeeds (TOPUP_ACK status 0); if it credits nothing, TopUp returns the
// Ack together with an error wrapping ErrNothingCredited and Redeem's
// error (status 1). A cookie with no session is refused with
// ErrUnknownSession before anything is redeemed.
func (l *Ledger) TopUp(ctx context.Context, cookie [cell.CookieLen]byte, payload []byte) ([]byte, error) {
	l.mu.Lock()
	s := l.sessions[cookie]
	l.mu.Unlock()
	if s == nil {
		return encodeAck(Ack{Reason: ReasonUnknownSession}), ErrUnknownSession
	}
	sats, err := l.redeem(ctx, payload)
	reason := reasonFor(err)
	if sats == 0 {
		if reason == ReasonNone {
			reason = ReasonOther
		}
		l.mu.Lock()
		ack := s.ackLocked(0, reason)
		l.mu.Unlock()
		if err == nil {
			return ack, ErrNothingCredited
		}
		return ack, fmt.Errorf("%w: %w", ErrNothingCredited, err)
	}
	if err != nil {
		l.log.Debug("top-up partly refused; crediting the good vouchers", "sats", sats, "reason", reason, "err", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sessions[cookie] != s {
		// The circuit ended while Redeem ran; its totals have moved to
		// ended. The vouchers are spent all the same.
		e := l.ended[s.roleName()]
		e.SatsRedeemed += sats
		e.TopUps++
		l.ended[s.roleName()] = e
		return s.ackLocked(sats, reason), nil
	}
	s.allowance = min(s.allowance+CreditBytes(sats, s.price), MaxAllowanceBytes)
	s.sats += sats
	s.topUps++
	return s.ackLocked(sats, reason), nil
}

// ackLocked is the encoded Ack for a TOPUP of s that credited sats. The
// ledger's mu must be held.
func (s *session) ackLocked(sats uint64, reason AckReason) []byte {
	return encodeAck(Ack{Reason: reason, CreditedSat: sats, Allowance: s.allowance, Charged: min(s.charged, maxChargedBytes)})
}

// encodeAck encodes an Ack the ledger built; its fields are within bounds
// by the ledger's invariants (allowance within ±MaxAllowanceBytes).
func encodeAck(a Ack) []byte {
	b, _ := a.AppendBinary(make([]byte, 0, AckLen))
	return b
}

// NoteService records that a BEGIN for service svc reached this hop on the
// session, so Stats counts the session under svc's name ("exit",
// "mempool", ...) instead of RoleRelay, and the session pays svc's price
// (LedgerConfig.ServicePrices) from now on: its allowance becomes what it
// redeemed at that price less every byte it was charged, so hop and
// client (which prices the last hop by its role from the start) agree.
// A session that BEGINs several services pays the dearest of them for
// all its bytes, and is counted under that one: a price only ever goes
// up, so a cheap BEGIN first (the mint, a rendezvous) cannot buy a dear
// service (an exit, a Tor gateway) at the cheap price. A mint-only
// session (Prepay) keeps its price 0: the engine confines it to the mint.
// A cookie with no session is ignored. Node calls it from the Begin hook.
func (l *Ledger) NoteService(cookie [cell.CookieLen]byte, svc cell.Service) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.sessions[cookie]
	if s == nil || s.mintOnly {
		return
	}
	p, ok := l.svcPrices[svc]
	if !ok {
		p = l.price
	}
	if s.role != "" && p <= s.price {
		return
	}
	s.role = svc.String()
	if p != s.price {
		s.price = p
		s.allowance = repricedAllowance(s.sats, s.charged, p)
	}
}

// lowestPrice is the lowest of relay and the services' prices.
func lowestPrice(relay uint64, services map[cell.Service]uint64) uint64 {
	p := relay
	for _, sp := range services {
		p = min(p, sp)
	}
	return p
}

// repricedAllowance is the allowance of a session that redeemed sats and
// was charged bytes, all at price: clamped to ±MaxAllowanceBytes.
func repricedAllowance(sats, charged, price uint64) int64 {
	credit := CreditBytes(sats, price)
	if price == 0 || charged <= uint64(credit) {
		return credit - int64(min(charged, uint64(credit)))
	}
	return -int64(min(charged-uint64(credit), MaxAllowanceBytes))
}

// Closed is circuit.Config.SessionClosed: it removes the session, keeping
// its counts in the totals. An unknown cookie is ignored.
func (l *Ledger) Closed(cookie [cell.CookieLen]byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := l.sessions[cookie]; s != nil {
		l.removeLocked(cookie, s)
	}
}

// removeLocked moves s's counts to ended and deletes it. l.mu must be held.
func (l *Ledger) removeLocked(cookie [cell.CookieLen]byte, s *session) {
	delete(l.sessions, cookie)
	role := s.roleName()
	e := l.ended[role]
	e.add(s.stats())
	e.Open = 0
	l.ended[role] = e
}

// sweepLocked removes sessions that saw no cell for StaleAfter. l.mu must
// be held.
func (l *Ledger) sweepLocked(now time.Time) {
	l.lastSweep = now
	n := 0
	for k, s := range l.sessions {
		if now.Sub(s.seen) >= l.staleAfter {
			l.removeLocked(k, s)
			n++
		}
	}
	if n > 0 {
		l.log.Debug("dropped stale sessions", "count", n)
	}
}
