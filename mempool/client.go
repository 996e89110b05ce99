package mempool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"time"
)

// Delivery is a stream to one delivery node over a circuit built for it
// alone. Closing Conn tears the circuit down.
type Delivery struct {
	Conn net.Conn
	// Node is the delivery node's peer ID.
	Node string
	// Network is the delivery node's network group (IPv4 /16, IPv6 /32),
	// "" if unknown.
	Network string
}

// Avoid says which delivery nodes a Dial must not choose.
type Avoid struct {
	// Nodes are peer IDs not to choose.
	Nodes []string
	// Networks are network groups not to choose from (node relaxes this
	// where discovery's same-network rule is relaxed: loopback test
	// networks).
	Networks []string
	// Urgent marks the stream a caller's verdict waits on (a round's first
	// SUBMIT): Dial may use a circuit built ahead for it. Others (the
	// second copy, echo queries) take the time to build their own, so
	// that circuits built ahead are left for the next broadcast.
	Urgent bool
}

// ClientConfig configures a Client. Dial and OutboxPath are required.
type ClientConfig struct {
	// Dial builds a fresh circuit to a delivery node that Avoid allows,
	// opens a BEGIN service mempool stream (target Target) on it and
	// returns it. Every call must build a new circuit that carries
	// nothing else and never connect to anything directly. It wraps
	// ErrNoDeliveryNode when no delivery node fits.
	Dial func(ctx context.Context, avoid Avoid) (Delivery, error)
	// OutboxPath is the outbox's bbolt file (created 0600).
	OutboxPath string
	// MaxQueued caps transactions in the outbox. Default DefaultMaxQueued.
	MaxQueued int
	// VerdictWait bounds how long Broadcast waits for the first verdict;
	// after it Broadcast returns the txid and the outbox keeps trying.
	// Default DefaultVerdictWait.
	VerdictWait time.Duration
	// AttemptTimeout bounds one delivery or echo round. Default
	// DefaultAttemptTimeout.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// rounds of one transaction. Defaults DefaultRetryMin, DefaultRetryMax.
	RetryMin, RetryMax time.Duration
	// EchoDelay is the wait between acceptance and the first echo query.
	// Default DefaultEchoDelay.
	EchoDelay time.Duration
	// Workers caps rounds in flight at once. Default DefaultWorkers.
	Workers int
	// Logger; default slog.Default(). Transactions and txids are never
	// logged.
	Logger *slog.Logger
}

// Client is the sending side: Broadcast queues a transaction in the
// durable outbox and delivers it through circuits; a background loop
// retries until it has been accepted and echoed. Create it with NewClient,
// then Start; Close stops it.
type Client struct {
	cfg    ClientConfig
	log    *slog.Logger
	outbox *Outbox
	wake   chan struct{} // buffered 1: the schedule changed
	sem    chan struct{} // Workers slots

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the loop and every round

	mu      sync.Mutex
	due     map[string]time.Time    // guarded by mu: txid → next round, for every outbox entry
	running map[string]bool         // guarded by mu: txids with a round in flight
	waiters map[string][]chan error // guarded by mu: Broadcast calls waiting for a first verdict
	started bool                    // guarded by mu
	closed  bool                    // guarded by mu
	stats   ClientStats             // guarded by mu
}

// ClientStats counts what the client did since it started.
type ClientStats struct {
	Delivered uint64 `json:"delivered"` // accepted and echoed, removed from the outbox
	Rejected  uint64 `json:"rejected"`  // rejected by a backend, removed
	Rounds    uint64 `json:"rounds"`    // delivery and echo rounds run
}

// NewClient opens the outbox and checks cfg. It sends nothing until Start.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.Dial == nil || cfg.OutboxPath == "" {
		return nil, errors.New("mempool client: Dial and OutboxPath are required")
	}
	if cfg.VerdictWait <= 0 {
		cfg.VerdictWait = DefaultVerdictWait
	}
	if cfg.AttemptTimeout <= 0 {
		cfg.AttemptTimeout = DefaultAttemptTimeout
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = DefaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryMin)
	if cfg.EchoDelay <= 0 {
		cfg.EchoDelay = DefaultEchoDelay
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ob, err := OpenOutbox(cfg.OutboxPath, cfg.MaxQueued)
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger.With("subsys", "mempool"),
		outbox:  ob,
		wake:    make(chan struct{}, 1),
		sem:     make(chan struct{}, cfg.Workers),
		due:     make(map[string]time.Time),
		running: make(map[string]bool),
		waiters: make(map[string][]chan error),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Start loads the outbox (transactions queued before a restart are due at
// once) and starts the delivery loop. Safe to call twice.
func (c *Client) Start() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return nil
	}
	c.started = true
	es, bad, err := c.outbox.List()
	if err != nil {
		return err
	}
	if bad > 0 {
		c.log.Warn("outbox entries that do not decode were skipped", "count", bad)
	}
	now := time.Now()
	for _, e := range es {
		c.due[e.TxID] = now
	}
	if len(es) > 0 {
		c.log.Info("resuming queued transactions", "count", len(es))
	}
	c.wg.Add(1)
	go c.loop()
	return nil
}

// Close stops the loop, waits for rounds in flight (their circuits close
// with ctx) and closes the outbox. What is queued stays on disk. Safe to
// call twice.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	for id, ws := range c.waiters {
		for _, w := range ws {
			w <- ErrClosed
		}
		delete(c.waiters, id)
	}
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return c.outbox.Close()
}

// Broadcast is the JSON-RPC front end's sendrawtransaction: it checks
// hexTx (CheckTx; -22 on failure), stores it in the outbox (on disk before
// anything is sent) and starts a delivery round. It returns the txid once
// the first delivery node accepted it; a backend's rejection (every
// delivery node of the round refused it, none accepted) as an *Error with
// the backend's code, after which the transaction is dropped; and if no
// verdict came within VerdictWait (or ctx ended first) the txid, with the
// transaction left queued to be retried.
//
// maxFeeRate is in BTC/kvB as bitcoind takes it: nil for the backend's
// default, 0 for no limit.
func (c *Client) Broadcast(ctx context.Context, hexTx string, maxFeeRate *float64) (string, error) {
	tx, err := CheckTx(hexTx)
	if err != nil {
		return "", err
	}
	e := Entry{TxID: tx.TxID, Raw: tx.Raw, Added: time.Now(), Next: time.Now()}
	if maxFeeRate != nil {
		r := *maxFeeRate
		if math.IsNaN(r) || r < 0 || r*1e8 > MaxFeeRateSatPerKvB {
			return "", rpcErr(-8, "Invalid maxfeerate")
		}
		e.MaxFeeRate, e.HasMaxFeeRate = uint64(math.Round(r*1e8)), true
	}
	w := make(chan error, 1) // one verdict, never blocks its sender
	c.mu.Lock()
	if c.closed || !c.started {
		c.mu.Unlock()
		return "", &Error{Code: CodeMisc, Message: "private broadcast is not running"}
	}
	// Fast path: the first round starts now and picks its circuit and
	// opens its stream while the outbox is written; it sends nothing of
	// the transaction until the write is on disk (persisted).
	fast := !c.running[tx.TxID]
	if fast {
		select {
		case c.sem <- struct{}{}:
		default:
			fast = false // every worker busy: queue it
		}
	}
	var persisted chan error
	if fast {
		persisted = make(chan error, 1) // written once by this call
		c.running[tx.TxID] = true
		c.waiters[tx.TxID] = append(c.waiters[tx.TxID], w)
		c.stats.Rounds++
		c.wg.Add(1)
		e.Attempts = 1
		go func() {
			defer c.wg.Done()
			c.runRound(e, persisted)
			<-c.sem
			c.mu.Lock()
			delete(c.running, e.TxID)
			c.mu.Unlock()
			c.kick()
		}()
	}
	c.mu.Unlock()
	added, err := c.outbox.Add(e)
	if fast {
		persisted <- err
	}
	if err != nil {
		c.dropWaiter(tx.TxID, w)
		return "", err
	}
	c.mu.Lock()
	if !fast {
		if !added {
			// Queued already: wait for the round under way, if any.
			if old, ok, _ := c.outbox.Get(tx.TxID); ok && old.Accepted() {
				c.mu.Unlock()
				return tx.TxID, nil
			}
		}
		c.waiters[tx.TxID] = append(c.waiters[tx.TxID], w)
		c.due[tx.TxID] = time.Now() // a repeated send retries at once
	}
	c.mu.Unlock()
	c.kick()
	t := time.NewTimer(c.cfg.VerdictWait)
	defer t.Stop()
	select {
	case err := <-w:
		if errors.Is(err, ErrClosed) {
			return tx.TxID, nil // queued; delivered after a restart
		}
		if err != nil {
			return "", err
		}
		return tx.TxID, nil
	case <-t.C:
	case <-ctx.Done():
	}
	c.dropWaiter(tx.TxID, w)
	return tx.TxID, nil
}

func (c *Client) dropWaiter(txid string, w chan error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ws := c.waiters[txid]
	if i := slices.Index(ws, w); i >= 0 {
		ws = slices.Delete(ws, i, i+1)
	}
	if len(ws) == 0 {
		delete(c.waiters, txid)
	} else {
		c.waiters[txid] = ws
	}
}

// notify hands err (nil: accepted) to every Broadcast waiting for txid.
func (c *Client) notify(txid string, err error) {
	c.mu.Lock()
	ws := c.waiters[txid]
	delete(c.waiters, txid)
	c.mu.Unlock()
	for _, w := range ws {
		w <- err
	}
}

// Abort removes txid from the outbox (abortprivatebroadcast); a round in
// flight finishes but its result is dropped. It returns ErrUnknownTx if
// the transaction is not queued.
func (c *Client) Abort(txid string) error {
	found, err := c.outbox.Remove(txid)
	if err != nil {
		return err
	}
	if !found {
		return ErrUnknownTx
	}
	c.mu.Lock()
	delete(c.due, txid)
	c.mu.Unlock()
	c.notify(txid, &Error{Code: CodeMisc, Message: "private broadcast aborted"})
	return nil
}

// AbortID removes the queued transaction whose txid or wtxid is id (RPC
// hex, as abortprivatebroadcast takes it) and returns it; ErrUnknownTx if
// none matches.
func (c *Client) AbortID(id string) (Entry, error) {
	es, err := c.Queued()
	if err != nil {
		return Entry{}, err
	}
	for _, e := range es {
		if e.TxID == id {
			return e, c.Abort(e.TxID)
		}
		if t, err := CheckRawTx(e.Raw); err == nil && t.WTxID == id {
			return e, c.Abort(e.TxID)
		}
	}
	return Entry{}, ErrUnknownTx
}

// Queued lists the outbox.
func (c *Client) Queued() ([]Entry, error) {
	es, _, err := c.outbox.List()
	return es, err
}

// Stats returns the client's counters.
func (c *Client) Stats() ClientStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

func (c *Client) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// loop starts rounds as they fall due.
func (c *Client) loop() {
	defer c.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		next := c.startDue()
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), time.Millisecond)
		}
		t.Reset(wait)
		select {
		case <-c.ctx.Done():
			return
		case <-c.wake:
		case <-t.C:
		}
	}
}

// startDue starts a round for every due transaction while workers are
// free, and returns the earliest time another one falls due (zero: none).
func (c *Client) startDue() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	var next time.Time
	for id, at := range c.due {
		if c.running[id] {
			continue
		}
		if at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		select {
		case c.sem <- struct{}{}:
		default:
			return now.Add(50 * time.Millisecond) // all workers busy; a finishing round kicks
		}
		c.running[id] = true
		c.stats.Rounds++
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.round(id)
			<-c.sem
			c.mu.Lock()
			delete(c.running, id)
			c.mu.Unlock()
			c.kick()
		}()
	}
	return next
}

// backoff is the jittered delay after the n-th round (n >= 1).
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.RetryMin << min(max(n-1, 0), 20)
	d = min(d, c.cfg.RetryMax)
	return time.Duration(float64(d) * (0.5 + rand.Float64())) // not secret: spreads retries
}

// reschedule stores e's attempt count and its next round, unless it left
// the outbox.
func (c *Client) reschedule(e Entry, at time.Time, why string) {
	txid := e.TxID
	if _, err := c.outbox.Update(txid, func(x *Entry) {
		x.Attempts = max(x.Attempts, e.Attempts)
		x.Next, x.LastError = at, why
	}); err != nil {
		if !errors.Is(err, ErrUnknownTx) {
			c.log.Warn("outbox write failed", "err", err)
		}
		c.forget(txid)
		return
	}
	c.mu.Lock()
	c.due[txid] = at
	c.mu.Unlock()
}

func (c *Client) forget(txid string) {
	c.mu.Lock()
	delete(c.due, txid)
	c.mu.Unlock()
}

// round runs one delivery round (not yet accepted) or echo check.
//
// Nothing is written before the round's first request goes out (the
// transaction is on disk since Broadcast); the attempt count is stored
// with the round's outcome.
func (c *Client) round(txid string) {
	e, ok, err := c.outbox.Get(txid)
	if err != nil || !ok {
		c.forget(txid) // aborted meanwhile
		return
	}
	e.Attempts++
	c.runRound(e, nil)
}

// runRound runs e's round. persisted, if not nil, delivers the result of
// writing e to the outbox: the round may choose circuits and open streams
// before it, but sends the transaction only after a nil result.
func (c *Client) runRound(e Entry, persisted <-chan error) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.AttemptTimeout)
	defer cancel()
	if e.Accepted() {
		c.echo(ctx, e)
	} else {
		c.deliver(ctx, e, persisted)
	}
}

type verdictFrom struct {
	node string
	v    Verdict
	err  error
}

// deliver sends e to one delivery node and, through another circuit, to a
// second one in another network, and acts on their verdicts.
func (c *Client) deliver(ctx context.Context, e Entry, persisted <-chan error) {
	sub := Submit{Tx: e.Raw, MaxFeeRate: e.MaxFeeRate, HasMaxFeeRate: e.HasMaxFeeRate}
	body, err := sub.Marshal()
	if err != nil { // unreachable: CheckTx bounds the size
		c.log.Error("submit does not encode", "err", err)
		return
	}
	first, err := c.cfg.Dial(ctx, Avoid{Urgent: true})
	if persisted != nil {
		if perr := <-persisted; perr != nil {
			// Not on disk (outbox full or broken): nothing is sent, and
			// Broadcast returns the error.
			if err == nil {
				first.Conn.Close()
			}
			return
		}
	}
	if err != nil {
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "dial: "+err.Error())
		return
	}
	const sends = 2
	results := make(chan verdictFrom, sends) // one per send; never blocks
	go func() { results <- c.submitTo(ctx, first, body) }()
	go func() {
		// The second copy must not hold up the first verdict.
		second, err := c.cfg.Dial(ctx, Avoid{Nodes: []string{first.Node}, Networks: nonEmpty(first.Network)})
		if err != nil {
			c.log.Debug("no second delivery node this round", "err", err)
			results <- verdictFrom{err: err}
			return
		}
		results <- c.submitTo(ctx, second, body)
	}()
	var (
		accepted  []string
		rejection error
		lastErr   error
		known     int   // rejections that claim the tx is known already
		knownErr  error // the first of them
	)
	for range sends {
		r := <-results
		switch {
		case r.err != nil:
			lastErr = r.err
		case r.v.Status == Accepted:
			accepted = append(accepted, r.node)
			if len(accepted) == 1 {
				// The caller hears first: if we crash before the write,
				// the next run sends again and the backend answers
				// "already have it", which is accepted.
				c.notify(e.TxID, nil)
				if _, err := c.outbox.Update(e.TxID, func(e *Entry) { e.AcceptedBy = appendNew(e.AcceptedBy, r.node) }); err != nil {
					c.forget(e.TxID)
				}
			}
		case r.v.Status == Rejected && claimsKnown(r.v):
			// "Already in the chain" reads as success to a wallet: one
			// node's word for it would let a liar swallow the
			// transaction past the echo check. Final only if both say it.
			known++
			if knownErr == nil {
				knownErr = r.v.Err()
			}
		case r.v.Status == Rejected:
			if rejection == nil {
				rejection = r.v.Err()
			}
		default:
			lastErr = r.v.Err()
		}
	}
	if rejection == nil && known >= sends {
		rejection = knownErr
	} else if rejection == nil && known > 0 {
		lastErr = errors.New("one delivery node alone says the transaction is known already")
	}
	switch {
	case len(accepted) > 0:
		if len(accepted) > 1 {
			_, _ = c.outbox.Update(e.TxID, func(e *Entry) {
				for _, n := range accepted[1:] {
					e.AcceptedBy = appendNew(e.AcceptedBy, n)
				}
			})
		}
		c.reschedule(e, time.Now().Add(c.cfg.EchoDelay), "")
	case rejection != nil:
		c.mu.Lock()
		c.stats.Rejected++
		c.mu.Unlock()
		if _, err := c.outbox.Remove(e.TxID); err != nil {
			c.log.Warn("outbox write failed", "err", err)
		}
		c.forget(e.TxID)
		c.notify(e.TxID, rejection)
	default:
		why := "no verdict"
		if lastErr != nil {
			why = lastErr.Error()
		}
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), why)
	}
}

// echo asks a delivery node that did not accept e whether the transaction
// is in its mempool or chain: yes ends e's life in the outbox; no sends it
// again at the next round; no answer retries the echo.
func (c *Client) echo(ctx context.Context, e Entry) {
	d, err := c.cfg.Dial(ctx, Avoid{Nodes: e.AcceptedBy})
	if errors.Is(err, ErrNoDeliveryNode) && len(e.AcceptedBy) > 1 {
		// Every other delivery node took it too: one that did not give
		// the first verdict will do.
		d, err = c.cfg.Dial(ctx, Avoid{Nodes: e.AcceptedBy[:1]})
	}
	if err != nil {
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "echo dial: "+err.Error())
		return
	}
	q := Query{TxID: mustHash(e)}
	k, body, err := exchange(ctx, d, KindQuery, q.Marshal())
	if err == nil && k != KindStatus {
		err = fmt.Errorf("%w: %v to QUERY", ErrUnexpected, k)
	}
	var st TxState
	if err == nil {
		st, err = ParseStatus(body)
	}
	switch {
	case err != nil:
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "echo: "+err.Error())
	case st == StateMempool || st == StateChain:
		c.mu.Lock()
		c.stats.Delivered++ // counted first, so that an empty outbox implies it
		c.mu.Unlock()
		if _, err := c.outbox.Remove(e.TxID); err != nil {
			c.log.Warn("outbox write failed", "err", err)
		}
		c.forget(e.TxID)
		c.log.Debug("transaction delivered and echoed")
	case st == StateUnknown:
		// Not seen elsewhere: send it again next round.
		_, _ = c.outbox.Update(e.TxID, func(e *Entry) { e.AcceptedBy = nil })
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "not seen back by another delivery node")
	default:
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "echo: delivery node unavailable")
	}
}

// submitTo sends one SUBMIT on d and reads the VERDICT; it closes d.
func (c *Client) submitTo(ctx context.Context, d Delivery, body []byte) verdictFrom {
	k, resp, err := exchange(ctx, d, KindSubmit, body)
	if err == nil && k != KindVerdict {
		err = fmt.Errorf("%w: %v to SUBMIT", ErrUnexpected, k)
	}
	var v Verdict
	if err == nil {
		v, err = ParseVerdict(resp)
	}
	return verdictFrom{node: d.Node, v: v, err: err}
}

// exchange writes one request on d, reads one answer and closes d (and so
// its circuit).
func exchange(ctx context.Context, d Delivery, k Kind, body []byte) (Kind, []byte, error) {
	defer d.Conn.Close()
	stop := context.AfterFunc(ctx, func() { d.Conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = d.Conn.SetDeadline(dl)
	}
	if err := WriteFrame(d.Conn, k, body); err != nil {
		return 0, nil, fmt.Errorf("send %v: %w", k, err)
	}
	rk, resp, err := ReadFrame(d.Conn)
	if err != nil {
		return 0, nil, fmt.Errorf("read answer to %v: %w", k, err)
	}
	return rk, resp, nil
}

func mustHash(e Entry) [32]byte {
	t, err := CheckRawTx(e.Raw) // decodeEntry checked it
	if err != nil {
		return [32]byte{}
	}
	return t.Hash
}

func appendNew(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// claimsKnown reports a rejection that says the backend has the
// transaction already (in its chain, or as "already …"): an honest node
// sends that for a confirmed transaction, and a wallet takes it as success.
func claimsKnown(v Verdict) bool {
	return v.Code == CodeAlreadyInChain || strings.Contains(strings.ToLower(v.Message), "already")
}
