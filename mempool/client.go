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
	// Ready says the circuit was built ahead of the Dial (Timings only).
	Ready bool
}

// Avoid says which delivery nodes a Dial must not choose.
type Avoid struct {
	// Nodes are peer IDs not to choose.
	Nodes []string
	// Networks are network groups not to choose from (node relaxes this
	// where discovery's same-network rule is relaxed: loopback test
	// networks).
	Networks []string
	// Urgent marks a SUBMIT stream (a round's two copies; the caller's
	// verdict waits on the first answer): Dial may use a circuit built
	// ahead for it, never used before. Echo queries, which nobody waits
	// on, take the time to build their own.
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
	// GiveUpAfter is how long after Broadcast took a transaction the
	// client stops trying: the next round due after it gives the entry up
	// instead (logged, moved to the given-up list that GivenUp returns).
	// Default DefaultGiveUpAfter.
	GiveUpAfter time.Duration
	// MaxAttempts caps the rounds (delivery and echo) run for one
	// transaction; once it has had MaxAttempts, it is given up likewise.
	// Default DefaultMaxAttempts.
	MaxAttempts int
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
	GaveUp    uint64 `json:"gave_up"`   // given up at the age or attempt limit
	// Timings splits the latency of Broadcast calls.
	Timings Timings `json:"timings"`
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
	if cfg.GiveUpAfter <= 0 {
		cfg.GiveUpAfter = DefaultGiveUpAfter
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
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
	start := time.Now()
	tx, err := CheckTx(hexTx)
	if err != nil {
		return "", err
	}
	// tm is written by the fast round before it hands over the verdict
	// (the channel send orders it) and read here only after receiving it.
	tm := &Timings{Calls: 1, Check: time.Since(start)}
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
	// Fast path: the first round starts now and takes its circuits while
	// the outbox is written. It sends once the write has passed its
	// checks (not full) and only the commit's fsync remains (staged): a
	// transaction the outbox refuses is never sent, and Broadcast answers
	// only after the fsync, so a caller never hears "accepted" of a
	// transaction that is not on disk. A crash during the fsync may have
	// sent a transaction that is not queued; its caller got no answer.
	// (When the txid is queued already the round sends after Add.)
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
		persisted = make(chan error, 1) // written once by this call (staged or Add's error)
		c.running[tx.TxID] = true
		c.waiters[tx.TxID] = append(c.waiters[tx.TxID], w)
		c.stats.Rounds++
		c.wg.Add(1)
		e.Attempts = 1
		go func() {
			defer c.wg.Done()
			c.runRound(e, persisted, tm)
			<-c.sem
			c.mu.Lock()
			delete(c.running, e.TxID)
			c.mu.Unlock()
			c.kick()
		}()
	}
	c.mu.Unlock()
	pstart := time.Now()
	staged := false
	added, err := c.outbox.AddStaged(e, func() {
		if fast {
			staged = true
			persisted <- nil
		}
	})
	tm.Persist = time.Since(pstart)
	if fast && !staged {
		persisted <- err // nil: queued already, not added
	}
	if err != nil {
		c.dropWaiter(tx.TxID, w)
		if staged {
			// The round sends once the write is staged: only the commit
			// failed, so the transaction may be out but is not queued.
			return "", fmt.Errorf("%w: %w", ErrMaybeSent, rpcErr(CodeMisc,
				"the outbox could not store it (%v), so it is not queued and will not be retried; check whether it reached a mempool before sending it again", err))
		}
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
		if fast && err == nil {
			tm.Total = time.Since(start)
			c.mu.Lock()
			c.stats.Timings.add(*tm)
			c.mu.Unlock()
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
	gs, err := c.GivenUp()
	if err != nil {
		return Entry{}, err
	}
	for _, e := range append(es, gs...) {
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

// GivenUp lists the transactions given up at the age or attempt limit
// (the last MaxGivenUp), each with when (GaveUp) and why (LastError).
// Abort forgets one; sending it again queues it afresh.
func (c *Client) GivenUp() ([]Entry, error) { return c.outbox.GivenUp() }

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
// the outbox; also, if not nil, changes the entry in the same write. The
// write is bookkeeping (Outbox.UpdateLater): it rides on the next commit,
// often the next broadcast's, instead of costing an fsync of its own; a
// crash before it makes the next run repeat the round, which sends
// nothing new (a backend answers a transaction it has as accepted).
func (c *Client) reschedule(e Entry, at time.Time, why string, also ...func(*Entry)) {
	txid := e.TxID
	c.outbox.UpdateLater(txid, func(x *Entry) {
		x.Attempts = max(x.Attempts, e.Attempts)
		x.Next, x.LastError = at, why
		for _, f := range also {
			f(x)
		}
	})
	c.mu.Lock()
	c.due[txid] = at // a round of a transaction gone meanwhile finds no entry and forgets it
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
	if why := c.spent(e, time.Now()); why != "" {
		c.giveUp(e, why)
		return
	}
	e.Attempts++
	c.runRound(e, nil, nil)
}

// spent says why e has reached the age or attempt limit, "" if it has
// not.
func (c *Client) spent(e Entry, now time.Time) string {
	if age := now.Sub(e.Added); age >= c.cfg.GiveUpAfter {
		return fmt.Sprintf("given up: not delivered and echoed within %v", c.cfg.GiveUpAfter)
	}
	if e.Attempts >= c.cfg.MaxAttempts {
		return fmt.Sprintf("given up: not delivered and echoed in %d rounds", c.cfg.MaxAttempts)
	}
	return ""
}

// giveUp moves e to the given-up list and stops scheduling it.
func (c *Client) giveUp(e Entry, why string) {
	c.mu.Lock()
	c.stats.GaveUp++ // counted first, so that the given-up list implies it
	c.mu.Unlock()
	if _, err := c.outbox.GiveUp(e.TxID, time.Now(), why); err != nil {
		c.mu.Lock()
		c.stats.GaveUp--
		c.mu.Unlock()
		if errors.Is(err, ErrUnknownTx) {
			c.forget(e.TxID) // aborted meanwhile
			return
		}
		c.log.Warn("outbox write failed", "err", err)
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), e.LastError)
		return
	}
	c.forget(e.TxID)
	// No txid in logs: getprivatebroadcastinfo names it (given_up).
	c.log.Warn("gave up on a queued transaction; it is listed as given up by getprivatebroadcastinfo and can be sent again",
		"reason", why, "age", time.Since(e.Added).Round(time.Second), "rounds", e.Attempts,
		"accepted", e.Accepted(), "last_error", e.LastError)
	c.notify(e.TxID, &Error{Code: CodeMisc, Message: "private broadcast " + why})
}

// runRound runs e's round. persisted, if not nil, says whether e's outbox
// write passed its checks (nil: staged, or queued already): the round may
// take circuits before it, but sends the transaction only after a nil
// result. tm, if not
// nil, receives the round's spans before its first verdict is handed over.
func (c *Client) runRound(e Entry, persisted <-chan error, tm *Timings) {
	ctx, cancel := context.WithTimeout(c.ctx, c.cfg.AttemptTimeout)
	defer cancel()
	if e.Accepted() {
		c.echo(ctx, e)
	} else {
		c.deliver(ctx, e, persisted, tm)
	}
}

type verdictFrom struct {
	node string
	v    Verdict
	err  error
	took time.Duration // SUBMIT written to VERDICT read
}

// deliver sends e to one delivery node and, through another circuit, to a
// second one in another network, and acts on their verdicts.
func (c *Client) deliver(ctx context.Context, e Entry, persisted <-chan error, tm *Timings) {
	if tm == nil {
		tm = new(Timings) // a round nobody waits on: spans are dropped
	}
	sub := Submit{Tx: e.Raw, MaxFeeRate: e.MaxFeeRate, HasMaxFeeRate: e.HasMaxFeeRate}
	body, err := sub.Marshal()
	if err != nil { // unreachable: CheckTx bounds the size
		c.log.Error("submit does not encode", "err", err)
		return
	}
	dstart := time.Now()
	first, err := c.cfg.Dial(ctx, Avoid{Urgent: true})
	tm.Dial = time.Since(dstart)
	if first.Ready {
		tm.Ready = 1
	}
	if persisted != nil {
		wstart := time.Now()
		perr := <-persisted
		tm.Wait = time.Since(wstart)
		if perr != nil {
			// Refused by the outbox (full or broken): nothing is sent,
			// and Broadcast returns the error.
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
	// The caller hears the first acceptance at once, from the goroutine
	// that read it (one hand-over less on its path). Who accepted is
	// written with the round's outcome, in one commit: if we crash before
	// it, the entry is still queued (nothing lost) and the next run sends
	// it again, which the backend answers "already have it" (accepted),
	// not a second transaction.
	var first1 sync.Once
	answer := func(r verdictFrom) verdictFrom {
		if r.err == nil && r.v.Status == Accepted {
			first1.Do(func() {
				tm.Exchange = r.took // read by Broadcast after notify
				c.notify(e.TxID, nil)
			})
		}
		return r
	}
	go func() { results <- answer(c.submitTo(ctx, first, body)) }()
	go func() {
		// The second copy must not hold up the first verdict.
		second, err := c.cfg.Dial(ctx, Avoid{Nodes: []string{first.Node}, Networks: nonEmpty(first.Network), Urgent: true})
		if err != nil {
			c.log.Debug("no second delivery node this round", "err", err)
			results <- verdictFrom{err: err}
			return
		}
		results <- answer(c.submitTo(ctx, second, body))
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
			accepted = append(accepted, r.node) // the caller was told (answer)
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
		c.reschedule(e, time.Now().Add(c.cfg.EchoDelay), "", func(x *Entry) {
			for _, n := range accepted {
				x.AcceptedBy = appendNew(x.AcceptedBy, n)
			}
		})
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
		// Bookkeeping too: after a crash before it, the echo is asked
		// again and the answer removes it then.
		c.outbox.RemoveLater(e.TxID)
		c.forget(e.TxID)
		c.log.Debug("transaction delivered and echoed")
	case st == StateUnknown:
		// Not seen elsewhere: send it again next round.
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "not seen back by another delivery node", func(x *Entry) { x.AcceptedBy = nil })
	default:
		c.reschedule(e, time.Now().Add(c.backoff(e.Attempts)), "echo: delivery node unavailable")
	}
}

// submitTo sends one SUBMIT on d and reads the VERDICT; it closes d.
func (c *Client) submitTo(ctx context.Context, d Delivery, body []byte) verdictFrom {
	start := time.Now()
	k, resp, err := exchange(ctx, d, KindSubmit, body)
	took := time.Since(start)
	if err == nil && k != KindVerdict {
		err = fmt.Errorf("%w: %v to SUBMIT", ErrUnexpected, k)
	}
	var v Verdict
	if err == nil {
		v, err = ParseVerdict(resp)
	}
	return verdictFrom{node: d.Node, v: v, err: err, took: took}
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
