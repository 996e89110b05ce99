package mint

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	bolt "go.etcd.io/bbolt"
)

// invoiceMemo is the memo of every mint invoice. It says nothing about the
// buyer.
const invoiceMemo = "co-infuse vouchers"

// Mint is the node's voucher mint. New opens its store and makes sure a
// current keyset exists; Start serves the protocol; Stop stops everything
// and closes the store.
type Mint struct {
	cfg   Config
	log   *slog.Logger
	db    *bolt.DB
	spent *voucher.SpentSet

	// ctx is cancelled by Stop; it bounds LND calls of in-flight streams.
	ctx    context.Context
	cancel context.CancelFunc

	rotateMu sync.Mutex // serialises Rotate (key generation is slow)

	mu      sync.RWMutex
	keysets map[voucher.KeysetID]*voucher.SigningKeyset // guarded by mu

	openMu sync.Mutex
	open   []openQuote // guarded by openMu; unexpired unpaid quotes, and swaps within SwapHold (swap.go), holding a slot, oldest first, ≤ MaxOpenQuotes

	// swapSigning holds a token per swap signing at once (≤
	// MaxSwapsSigning).
	swapSigning chan struct{}
	// swapsStored counts the records in bucketSwaps (≤ MaxSwapRecords,
	// give or take the swaps signing at once); swapsSigned and
	// swapsReplayed count swaps signed and answered from the store since
	// New (SwapCounts).
	swapsStored, swapsSigned, swapsReplayed atomic.Int64

	// connStreams counts ServeConn calls past the busy check, ≤
	// MaxCircuitStreams (incremented first, undone when over the cap).
	connStreams atomic.Int64

	lifeMu   sync.Mutex
	started  bool           // guarded by lifeMu
	stopped  bool           // guarded by lifeMu
	handlers sync.WaitGroup // stream handlers and the housekeeper; Add under lifeMu while !stopped
	quit     chan struct{}  // closed by Stop

	// afterSign, if set (tests), runs after signing and before the
	// signatures are stored; an error aborts the request like a crash.
	afterSign func() error
	// afterSwapSign, if set (tests), runs after a swap's outputs are
	// signed and before anything is stored; an error aborts the request
	// like a crash.
	afterSwapSign func() error
	// beforeRead, if set (tests), runs when a handler starts reading.
	beforeRead func()
}

type openQuote struct {
	id      [voucher.QuoteIDSize]byte
	owner   quoteOwner
	created time.Time
	expires time.Time
}

// quoteOwner is who asked for a quote, as far as the mint can tell, for
// the per-buyer cap on open quotes: the libp2p peer of a
// /co-infuse/mint/1 stream, or, for a stream through a circuit
// (ServeConn), this hop's session cookie of that circuit. The two kinds
// never compare equal.
type quoteOwner struct {
	peer    peer.ID
	session [SessionLen]byte
	circuit bool
}

func peerOwner(p peer.ID) quoteOwner { return quoteOwner{peer: p} }

func sessionOwner(s [SessionLen]byte) quoteOwner { return quoteOwner{session: s, circuit: true} }

// New opens (or creates) the mint's store and loads its keysets, generating
// a current keyset if there is none (which can take seconds).
func New(cfg Config) (*Mint, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	db, err := bolt.Open(cfg.Path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("mint: open store: %w", err)
	}
	log := cfg.Logger.With("subsys", "voucher/mint")
	spent, err := voucher.NewSpentSet(db, voucher.WithSpentLogger(cfg.Logger))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("mint: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mint{
		cfg:     cfg,
		log:     log,
		db:      db,
		spent:   spent,
		ctx:     ctx,
		cancel:  cancel,
		keysets: map[voucher.KeysetID]*voucher.SigningKeyset{},
		quit:    make(chan struct{}),

		swapSigning: make(chan struct{}, cfg.MaxSwapsSigning),
	}
	if err := m.load(); err != nil {
		m.closeStores()
		return nil, err
	}
	if err := m.Rotate(); err != nil {
		m.closeStores()
		return nil, err
	}
	return m, nil
}

func (m *Mint) load() error {
	return m.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketQuotes, bucketSwaps} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("mint: create buckets: %w", err)
			}
		}
		m.swapsStored.Store(countSwaps(tx))
		b, err := tx.CreateBucketIfNotExists(bucketKeysets)
		if err != nil {
			return fmt.Errorf("mint: create buckets: %w", err)
		}
		return b.ForEach(func(k, v []byte) error {
			sk, err := voucher.ParseSigningKeyset(v)
			if err != nil {
				return fmt.Errorf("mint: stored keyset %x: %w", k, err)
			}
			m.keysets[sk.Public().ID()] = sk
			return nil
		})
	})
}

// Start registers the protocol handler (if Config.Host is set) and starts
// the housekeeping goroutine. Safe to call twice; fails after Stop.
func (m *Mint) Start() error {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.stopped {
		return voucher.ErrClosed
	}
	if m.started {
		return nil
	}
	m.started = true
	if m.cfg.Host != nil {
		m.cfg.Host.SetStreamHandler(protocol.ID(voucher.ProtocolID), m.handleStream)
	}
	m.handlers.Add(1)
	go m.housekeep()
	return nil
}

// Stop removes the handler, cancels in-flight requests, waits for them and
// the housekeeper, and closes the store. Safe to call twice.
func (m *Mint) Stop() error {
	m.lifeMu.Lock()
	if m.stopped {
		m.lifeMu.Unlock()
		return nil
	}
	m.stopped = true
	m.lifeMu.Unlock()
	if m.cfg.Host != nil {
		m.cfg.Host.RemoveStreamHandler(protocol.ID(voucher.ProtocolID))
	}
	close(m.quit)
	m.cancel()
	m.handlers.Wait()
	return m.closeStores()
}

func (m *Mint) closeStores() error {
	m.cancel()
	m.spent.Close()
	return m.db.Close()
}

// enter registers a handler goroutine; false once stopping.
func (m *Mint) enter() bool {
	m.lifeMu.Lock()
	defer m.lifeMu.Unlock()
	if m.stopped {
		return false
	}
	m.handlers.Add(1)
	return true
}

func (m *Mint) housekeep() {
	defer m.handlers.Done()
	t := time.NewTicker(m.cfg.HousekeepingInterval)
	defer t.Stop()
	for {
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
		if err := m.Rotate(); err != nil {
			m.log.Warn("keyset rotation failed", "err", err)
		}
		if n, err := m.spent.Prune(m.cfg.Now()); err != nil {
			m.log.Warn("spent set prune failed", "err", err)
		} else if n > 0 {
			m.log.Info("pruned spent vouchers of expired keysets", "keysets", n)
		}
		if err := m.pruneQuotes(m.ctx); err != nil {
			m.log.Warn("quote prune failed", "err", err)
		}
		if n, err := m.pruneSwaps(m.cfg.Now()); err != nil {
			m.log.Warn("swap prune failed", "err", err)
		} else if n > 0 {
			m.log.Info("pruned swap answers of expired keysets", "swaps", n)
		}
	}
}

// Keysets returns the keysets to publish: every keyset that still redeems,
// including one that starts minting later. Clients mint only with a keyset
// they see here (through the node's advert).
func (m *Mint) Keysets() []*voucher.Keyset {
	now := m.cfg.Now()
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]*voucher.Keyset, 0, len(m.keysets))
	for _, sk := range m.keysets {
		if now.Before(sk.Public().RedeemUntil()) {
			out = append(out, sk.Public())
		}
	}
	sortKeysets(out)
	return out
}

// current returns the mintable keyset with the latest NotAfter.
func (m *Mint) current(now time.Time) *voucher.SigningKeyset {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var cur *voucher.SigningKeyset
	for _, sk := range m.keysets {
		if sk.Public().MintableAt(now) && (cur == nil || sk.Public().NotAfter().After(cur.Public().NotAfter())) {
			cur = sk
		}
	}
	return cur
}

func (m *Mint) keyset(id voucher.KeysetID) *voucher.SigningKeyset {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.keysets[id]
}

// handleStream serves one request/response on s (VOUCHERS.md §3.1).
func (m *Mint) handleStream(s network.Stream) {
	if !m.enter() {
		s.Reset()
		return
	}
	defer m.handlers.Done()
	if err := s.Scope().ReserveMemory(voucher.MaxMessageSize, network.ReservationPriorityMedium); err != nil {
		s.Reset()
		return
	}
	defer s.Scope().ReleaseMemory(voucher.MaxMessageSize)
	s.SetDeadline(time.Now().Add(m.cfg.StreamTimeout))
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.StreamTimeout)
	defer cancel()
	// Stop cancels m.ctx: reset the stream so a read or write blocked on a
	// slow peer ends now, not at the deadline.
	stop := context.AfterFunc(m.ctx, func() { s.Reset() })
	defer stop()

	if m.beforeRead != nil {
		m.beforeRead()
	}
	req, err := voucher.ReadMessage(s)
	if err != nil {
		m.log.Debug("bad mint request", "err", err)
		s.Reset()
		return
	}
	m.observe(Via{Peer: s.Conn().RemotePeer(), Addr: s.Conn().RemoteMultiaddr()})
	resp := m.serve(ctx, peerOwner(s.Conn().RemotePeer()), req)
	if err := voucher.WriteMessage(s, resp); err != nil {
		s.Reset()
		return
	}
	s.Close()
}

// serve answers one request; failures become error responses.
func (m *Mint) serve(ctx context.Context, from quoteOwner, req []byte) []byte {
	var resp []byte
	var err error
	switch voucher.MsgType(req[0]) {
	case voucher.MsgQuoteRequest:
		var q voucher.QuoteRequest
		if q, err = voucher.ParseQuoteRequest(req); err == nil {
			resp, err = m.quote(ctx, from, q.Amount)
		}
	case voucher.MsgMintRequest:
		var r voucher.MintRequest
		if r, err = voucher.ParseMintRequest(req); err == nil {
			resp, err = m.sign(ctx, &r, sha256.Sum256(req))
		}
	case voucher.MsgCheckState:
		var r voucher.CheckStateRequest
		if r, err = voucher.ParseCheckStateRequest(req); err == nil {
			resp, err = m.checkState(&r)
		}
	case voucher.MsgSwapRequest:
		var r voucher.SwapRequest
		if r, err = voucher.ParseSwapRequest(req); err == nil {
			resp, err = m.swap(ctx, from, &r, sha256.Sum256(req))
		}
	default:
		err = fmt.Errorf("%w: message type %d", voucher.ErrMalformed, req[0])
	}
	if err != nil {
		code := voucher.CodeFor(err)
		if code == voucher.CodeUnavailable {
			m.log.Warn("mint request failed", "err", err)
		} else {
			m.log.Debug("mint request refused", "err", err)
		}
		e := voucher.ErrorResponse{Code: code}
		resp, _ = e.MarshalBinary()
	}
	return resp
}

// reserveOpen takes an open-quote slot for quote id asked by from,
// dropping expired ones. When every slot is taken it frees one for from
// rather than answer busy, in this order: the oldest quote of the buyer
// holding the most, if that buyer holds at least two more than from
// (fair sharing: a few buyers cannot hold every slot), else the oldest
// quote if it has held its slot for QuoteHold (an abandoned quote does
// not block purchases for the invoice's whole life). A freed quote loses
// only its slot: it stays in the store and is signed when paid.
func (m *Mint) reserveOpen(id [voucher.QuoteIDSize]byte, from quoteOwner, now, expires time.Time) bool {
	m.openMu.Lock()
	defer m.openMu.Unlock()
	live := m.open[:0]
	perPeer := 0
	for _, o := range m.open {
		if o.expires.After(now) {
			live = append(live, o)
			if o.owner == from {
				perPeer++
			}
		}
	}
	clear(m.open[len(live):])
	m.open = live
	if perPeer >= m.cfg.MaxOpenQuotesPerPeer {
		return false
	}
	if len(m.open) >= m.cfg.MaxOpenQuotes {
		i := m.slotToFree(perPeer, now)
		if i < 0 {
			return false
		}
		m.log.Debug("open-quote slot handed to a new buyer")
		m.open = append(m.open[:i], m.open[i+1:]...)
	}
	m.open = append(m.open, openQuote{id: id, owner: from, created: now, expires: expires})
	return true
}

// slotToFree picks the open quote whose slot goes to a buyer holding
// mine quotes when every slot is taken (see reserveOpen), or -1. Called
// with openMu held; m.open is oldest first.
func (m *Mint) slotToFree(mine int, now time.Time) int {
	counts := make(map[quoteOwner]int, len(m.open))
	var most quoteOwner
	mostN := 0
	for _, o := range m.open {
		counts[o.owner]++
		if counts[o.owner] > mostN {
			most, mostN = o.owner, counts[o.owner]
		}
	}
	if mostN >= mine+2 {
		for i, o := range m.open {
			if o.owner == most {
				return i
			}
		}
	}
	if len(m.open) > 0 && !m.open[0].created.Add(m.cfg.QuoteHold).After(now) {
		return 0
	}
	return -1
}

// releaseOpen gives back the slot of quote id: when the quote was never
// made, and when it has been paid and signed (it is no longer open).
func (m *Mint) releaseOpen(id [voucher.QuoteIDSize]byte) {
	m.openMu.Lock()
	defer m.openMu.Unlock()
	for i, o := range m.open {
		if o.id == id {
			m.open = append(m.open[:i], m.open[i+1:]...)
			return
		}
	}
}

// quote creates an invoice for amount and stores the quote before
// returning it (VOUCHERS.md §3.3).
func (m *Mint) quote(ctx context.Context, from quoteOwner, amount uint64) ([]byte, error) {
	now := m.cfg.Now()
	cur := m.current(now)
	if cur == nil {
		return nil, fmt.Errorf("%w: no current keyset", voucher.ErrUnavailable)
	}
	if amount > m.cfg.MaxQuoteSat {
		return nil, fmt.Errorf("%w: %d sats above the %d cap", voucher.ErrAmount, amount, m.cfg.MaxQuoteSat)
	}
	if _, err := cur.Public().Split(amount, voucher.MaxVouchersPerMint); err != nil {
		return nil, err
	}
	expires := now.Add(m.cfg.InvoiceExpiry).Truncate(time.Second)
	var id [voucher.QuoteIDSize]byte
	rand.Read(id[:])
	if !m.reserveOpen(id, from, now, expires) {
		return nil, voucher.ErrBusy
	}
	payReq, payHash, err := m.cfg.CreateInvoice(ctx, int64(amount), invoiceMemo, m.cfg.InvoiceExpiry)
	if err != nil {
		m.releaseOpen(id)
		return nil, fmt.Errorf("%w: create invoice: %v", voucher.ErrUnavailable, err)
	}
	q := voucher.Quote{
		Amount:         amount,
		Keyset:         cur.Public().ID(),
		PriceMsatPerMB: m.cfg.PriceMsatPerMB,
		Expires:        expires,
		Payee:          m.cfg.Payee,
		PayHash:        payHash,
		PayReq:         payReq,
	}
	q.ID = id
	resp, err := q.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: quote: %v", voucher.ErrUnavailable, err)
	}
	rec := quoteRecord{state: stateOpen, amount: amount, keyset: q.Keyset, created: now, expires: expires, payHash: payHash, payReq: payReq}
	err = m.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuotes).Put(q.ID[:], rec.encode())
	})
	if err != nil {
		return nil, fmt.Errorf("%w: store quote: %v", voucher.ErrUnavailable, err)
	}
	return resp, nil
}

func (m *Mint) loadQuote(id [voucher.QuoteIDSize]byte) (*quoteRecord, error) {
	var rec *quoteRecord
	err := m.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketQuotes).Get(id[:])
		if v == nil {
			return voucher.ErrQuoteUnknown
		}
		var err error
		rec, err = decodeQuoteRecord(v)
		return err
	})
	return rec, err
}

func issuedResponse(rec *quoteRecord, reqHash [32]byte) ([]byte, error) {
	if subtle.ConstantTimeCompare(rec.reqHash[:], reqHash[:]) != 1 {
		return nil, voucher.ErrQuoteIssued
	}
	r := voucher.MintResponse{Sigs: rec.sigs}
	return r.MarshalBinary()
}

// sign serves a mint request (VOUCHERS.md §3.4): a retry of a signed quote
// gets the stored signatures; otherwise the invoice must be settled, the
// request must match the quote, and the signatures are stored (fsynced)
// before they are returned. A paid quote is a bearer claim on purpose:
// whoever presents its ID is served, whatever peer or circuit asks, so a
// client that restarts with a new peer ID (or buys through another
// circuit) still gets what it paid for; binding it to the requester would
// only link the purchase's two requests (VOUCHERS.md §3.4).
func (m *Mint) sign(ctx context.Context, req *voucher.MintRequest, reqHash [32]byte) ([]byte, error) {
	rec, err := m.loadQuote(req.Quote)
	if errors.Is(err, errRecord) {
		m.log.Error("corrupt quote record", "err", err)
		return nil, voucher.ErrUnavailable
	}
	if err != nil {
		return nil, err
	}
	if rec.state == stateIssued {
		return issuedResponse(rec, reqHash)
	}
	settled, err := m.cfg.InvoiceSettled(ctx, rec.payHash)
	if err != nil {
		return nil, fmt.Errorf("%w: invoice lookup: %v", voucher.ErrUnavailable, err)
	}
	if !settled {
		return nil, voucher.ErrNotPaid
	}
	sk := m.keyset(req.Keyset)
	if sk == nil {
		return nil, voucher.ErrUnknownKeyset
	}
	if !sk.Public().MintableAt(m.cfg.Now()) {
		return nil, voucher.ErrExpired
	}
	if req.Total() != rec.amount {
		return nil, fmt.Errorf("%w: blinded amounts total %d, quote is for %d", voucher.ErrBadRequest, req.Total(), rec.amount)
	}
	sigs := make([][]byte, len(req.Blinded))
	for i, bm := range req.Blinded {
		if sigs[i], err = sk.BlindSign(bm.Amount, bm.Msg); err != nil {
			return nil, err
		}
	}
	if m.afterSign != nil {
		if err := m.afterSign(); err != nil {
			return nil, fmt.Errorf("%w: %v", voucher.ErrUnavailable, err)
		}
	}
	var resp []byte
	err = m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQuotes)
		cur, err := decodeQuoteRecord(b.Get(req.Quote[:]))
		if err != nil {
			return err
		}
		if cur.state == stateIssued { // a concurrent request won
			resp, err = issuedResponse(cur, reqHash)
			return err
		}
		cur.state, cur.reqHash, cur.sigs = stateIssued, reqHash, sigs
		if err := b.Put(req.Quote[:], cur.encode()); err != nil {
			return err
		}
		r := voucher.MintResponse{Sigs: sigs}
		resp, err = r.MarshalBinary()
		return err
	})
	if errors.Is(err, voucher.ErrQuoteIssued) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: store signatures: %v", voucher.ErrUnavailable, err)
	}
	m.releaseOpen(req.Quote) // paid and signed: no longer an open quote
	return resp, nil
}

// pruneQuotes drops signed quotes older than IssuedRetention and unsigned
// quotes whose invoice expired more than an hour ago unpaid (an expired
// invoice can no longer be settled; a paid one is kept until it is signed).
func (m *Mint) pruneQuotes(ctx context.Context) error {
	now := m.cfg.Now()
	type cand struct {
		id      []byte
		payHash [32]byte
	}
	var issued [][]byte
	var open []cand
	err := m.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketQuotes).ForEach(func(k, v []byte) error {
			rec, err := decodeQuoteRecord(v)
			if err != nil {
				return nil // kept for inspection; never served
			}
			switch {
			case rec.state == stateIssued && now.Sub(rec.created) > m.cfg.IssuedRetention:
				issued = append(issued, append([]byte(nil), k...))
			case rec.state == stateOpen && now.Sub(rec.expires) > time.Hour && len(open) < 256:
				open = append(open, cand{id: append([]byte(nil), k...), payHash: rec.payHash})
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	dead := issued
	if m.cfg.InvoiceSettled == nil {
		open = nil
	}
	for _, c := range open {
		settled, err := m.cfg.InvoiceSettled(ctx, c.payHash)
		if err != nil {
			return fmt.Errorf("invoice lookup: %w", err)
		}
		if !settled {
			dead = append(dead, c.id)
		}
	}
	if len(dead) == 0 {
		return nil
	}
	return m.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketQuotes)
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}
