package circuit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// hopState is where a relayed circuit is in its life.
type hopState uint8

const (
	hopPending   hopState = iota // CREATE received, handshake not done
	hopOpen                      // handshake done; this is the last hop
	hopExtending                 // EXTEND in progress
	hopExtended                  // next hop attached
	hopClosed
)

// hop is this node's part in a circuit it relays (PROTOCOL.md §3). It has
// no goroutine: the previous link's reader runs the forward direction, the
// next link's reader the backward one. Its memory is a few hundred bytes
// plus two AES-GCM states, so idle circuits are cheap.
type hop struct {
	e      *Engine
	prev   *link
	prevID cell.CircID
	pq     *circQueue // toward prev; ordered by bmu
	depth  int
	cookie [cell.CookieLen]byte // set once, before state leaves hopPending
	fwd    *layer               // used only by prev's reader, after hopPending

	lastActive atomic.Int64 // unix nanos of the last cell

	// DROPs addressed to this hop (§3.4), a token bucket; used only by
	// prev's reader.
	dropTokens int
	dropAt     int64 // unix nanos the bucket was last filled

	mu       sync.Mutex // guards the fields below
	state    hopState
	next     *link
	nextID   cell.CircID
	nq       *circQueue // toward next; fed only by prev's reader
	extendBy int64      // unix nanos; while hopExtending
	exit     *exitSide
	ctx      context.Context // lazily made for hooks; cancelled on destroy
	cancel   context.CancelFunc
	topping  bool // a TopUp hook call is running
	// mintOnly marks a circuit a paid hop accepted without payment for
	// its mint alone (PROTOCOL.md §4.5): no EXTEND, no BEGIN but the
	// mint, at most Limits.MintOnlyMaxCells cells (mintCells counts
	// them) until mintUntil (unix nanos). Set before the state leaves
	// hopPending.
	mintOnly  bool
	mintCells int
	mintUntil int64

	bmu     sync.Mutex // guards bwd, bclosed and the order of cells sent to prev
	bwd     *layer
	bclosed bool // DESTROY was sent or received on prev: send nothing more
}

// handleCreate runs on an inbound link's reader for a CREATE (§2.1). The
// refusals here cost no public-key work (§4.4): format, onion key, the
// neighbour's and the global CREATE rate, then capacity.
func (e *Engine) handleCreate(l *link, c *cell.Cell) {
	id := c.CircID()
	var cr cell.Create
	err := cr.UnmarshalBody(c.Body())
	hs := append([]byte(nil), cr.Handshake...)
	e.pool.Put(c)
	if err != nil || id == 0 {
		l.sendDestroy(id, cell.ReasonProtocol)
		return
	}
	if e.cfg.OnionKey == nil {
		l.sendDestroy(id, cell.ReasonResource)
		return
	}
	h := &hop{e: e, prev: l, prevID: id, depth: int(cr.Depth)}
	lim := e.cfg.Limits
	now := time.Now()
	e.mu.Lock()
	if !e.closed && !e.admitCreateLocked(l.peer, now) {
		e.mu.Unlock()
		e.createsLimited.Add(1)
		l.sendDestroy(id, cell.ReasonResource)
		return
	}
	if e.closed || len(e.hops) >= lim.MaxCircuits || e.perPeer[l.peer] >= lim.MaxCircuitsPerPeer ||
		e.creating >= lim.MaxPendingCreates || !e.mem.reserve(circuitCost, useNew) {
		e.mu.Unlock()
		l.sendDestroy(id, cell.ReasonResource)
		return
	}
	h.pq = l.newQueue(h)
	h.lastActive.Store(now.UnixNano())
	if err := l.registerID(id, h.pq); err != nil {
		e.mem.release(circuitCost)
		e.mu.Unlock()
		if old, ok := l.lookup(id).(*hop); ok {
			old.destroy(cell.ReasonProtocol, nil)
		} else {
			l.sendDestroy(id, cell.ReasonProtocol)
		}
		return
	}
	e.hops[h] = struct{}{}
	e.perPeer[l.peer]++
	e.creating++
	e.wg.Add(1)
	e.mu.Unlock()
	go h.accept(hs)
}

// accept asks Admit, reads message 1, has a paid hop's Prepay hook judge
// its offer (§4.1), and answers CREATED (or refuses).
func (h *hop) accept(msg1 []byte) {
	e := h.e
	defer e.wg.Done()
	defer func() {
		e.mu.Lock()
		e.creating--
		e.mu.Unlock()
	}()
	if e.cfg.Admit != nil {
		ctx, cancel := context.WithTimeout(e.ctx, e.cfg.Limits.CreateTimeout)
		err := e.cfg.Admit(ctx, h.prev.peer, h.depth)
		cancel()
		if err != nil {
			h.destroy(admitReason(err), nil)
			return
		}
	}
	var cookie [cell.CookieLen]byte
	if _, err := rand.Read(cookie[:]); err != nil {
		h.destroy(cell.ReasonInternal, nil)
		return
	}
	shs, payload, err := readHandshake(e.cfg.OnionKey, msg1)
	if err != nil {
		e.log.Debug("create refused", "peer", h.prev.peer, "err", err)
		h.destroy(cell.ReasonProtocol, nil)
		return
	}
	defer shs.wipe()
	var off cell.Offer
	if err := off.UnmarshalBinary(payload); err != nil {
		e.log.Debug("create refused: malformed offer", "peer", h.prev.peer, "err", err)
		h.destroy(cell.ReasonProtocol, nil)
		return
	}
	ans := cell.Answer{Cookie: cookie}
	session := false // the Prepay hook opened a session for cookie
	if e.cfg.Prepay != nil {
		if off.Kind == cell.OfferNone {
			// §4.4: nothing offered to a paid hop; refused before any
			// more public-key work.
			e.createsUnpaid.Add(1)
			e.log.Debug("create refused: no payment offered", "peer", h.prev.peer)
			h.destroy(cell.ReasonPayment, nil)
			return
		}
		ctx, cancel := context.WithTimeout(h.context(), e.cfg.Limits.CreateTimeout)
		st, ack := e.cfg.Prepay(ctx, cookie, h.prev.peer, off)
		cancel()
		if len(ack) > cell.MaxAckLen {
			ack = nil
		}
		ans.Paid, ans.Status, ans.Ack = true, st, ack
		session = st != cell.AnswerRefused
	}
	// closeSession ends the session the hook opened when the circuit
	// never opens (after it opens, teardown does).
	closeSession := func() {
		if session && e.cfg.SessionClosed != nil {
			e.cfg.SessionClosed(cookie)
		}
	}
	keys, msg2, err := shs.answer(ans)
	if err != nil {
		closeSession()
		h.destroy(cell.ReasonInternal, nil)
		return
	}
	c := e.pool.Get()
	c.SetCircID(h.prevID)
	c.SetCommand(cell.CmdCreated)
	if err := (&cell.Created{Handshake: msg2}).MarshalBody(c.Body()); err != nil {
		keys.wipe()
		e.pool.Put(c)
		closeSession()
		h.destroy(cell.ReasonInternal, nil)
		return
	}
	if ans.Paid && ans.Status == cell.AnswerRefused {
		// §4.4: CREATED carrying the refusal (the client learns why,
		// authenticated), then DESTROY reason payment; no layers, no
		// session.
		keys.wipe()
		e.createsUnpaid.Add(1)
		h.bmu.Lock()
		if h.bclosed {
			e.pool.Put(c)
		} else {
			_ = h.pq.push(c)
		}
		h.bmu.Unlock()
		h.destroy(cell.ReasonPayment, nil)
		return
	}
	fwd, err1 := newLayer(keys.fwd)
	bwd, err2 := newLayer(keys.bwd)
	keys.wipe()
	if err1 != nil || err2 != nil {
		e.pool.Put(c)
		closeSession()
		h.destroy(cell.ReasonInternal, nil)
		return
	}
	h.mu.Lock()
	if h.state != hopPending {
		h.mu.Unlock()
		e.pool.Put(c)
		closeSession()
		return
	}
	h.cookie = cookie
	h.fwd = fwd
	if ans.Paid && ans.Status == cell.AnswerMintOnly {
		h.mintOnly = true
		h.mintUntil = time.Now().Add(e.cfg.Limits.MintOnlyLifetime).UnixNano()
	}
	h.state = hopOpen
	h.mu.Unlock()
	h.bmu.Lock()
	h.bwd = bwd
	if h.bclosed {
		e.pool.Put(c)
	} else {
		_ = h.pq.push(c) // an empty queue has room; a closed link destroys us
	}
	h.bmu.Unlock()
}

// mintOnlyExpired reports a mint-only circuit past its lifetime.
func (h *hop) mintOnlyExpired(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mintOnly && h.state != hopClosed && now.UnixNano() > h.mintUntil
}

// admitReason maps an Admit error to a DESTROY reason; anything that is not
// a known sentinel is a resource refusal.
func admitReason(err error) cell.Reason {
	r := DestroyReasonFor(err)
	if r == cell.ReasonInternal {
		return cell.ReasonResource
	}
	return r
}

// handleCell implements circEnd.
func (h *hop) handleCell(l *link, c *cell.Cell) {
	h.lastActive.Store(h.e.coarseNow())
	if l == h.prev {
		h.fromPrev(c)
	} else {
		h.fromNext(l, c)
	}
}

// linkClosed implements circEnd.
func (h *hop) linkClosed(l *link) { h.destroy(cell.ReasonLinkClosed, l) }

func (h *hop) fromPrev(c *cell.Cell) {
	e := h.e
	switch c.Command() {
	case cell.CmdDestroy:
		r := parseDestroy(c)
		e.pool.Put(c)
		h.destroyedBy(r, h.prev)
		return
	case cell.CmdRelay:
	default:
		e.pool.Put(c)
		h.destroy(cell.ReasonProtocol, nil)
		return
	}
	h.mu.Lock()
	st, nq, nextID := h.state, h.nq, h.nextID
	h.mu.Unlock()
	if st == hopClosed {
		e.pool.Put(c)
		return
	}
	if st == hopPending {
		e.pool.Put(c)
		h.destroy(cell.ReasonProtocol, nil)
		return
	}
	body := c.Body()
	// §3.1: open our layer, check the cookie, move the inner onion up.
	kind, err := peelForward(h.fwd, &h.cookie, h.depth, body)
	if err != nil {
		if errors.Is(err, errAuth) {
			e.authFail.Add(1)
		}
		e.pool.Put(c)
		h.destroy(cell.ReasonProtocol, nil)
		return
	}
	if !h.charge() {
		e.pool.Put(c)
		return
	}
	switch kind {
	case kindOnward:
		if st != hopExtended {
			e.pool.Put(c)
			h.destroy(cell.ReasonProtocol, nil)
			return
		}
		c.SetCircID(nextID)
		if f := e.testTamper.Load(); f != nil && (*f)(c, true) {
			d := e.pool.Get()
			*d = *c
			_ = nq.push(d)
		}
		// Never waits (§1.2): a full queue destroys this circuit alone; a
		// dead link destroys us through linkClosed.
		if err := nq.push(c); errors.Is(err, errQueueFull) {
			h.queueFull(nq)
		}
	case kindHere:
		msg, err := cell.DecodeRelay(body[hdrLen : cell.OnionLen(h.depth)-cell.TagLen])
		if err == nil {
			err = h.handleMsg(st, msg)
		}
		e.pool.Put(c)
		if err != nil {
			e.log.Debug("relay message refused", "err", err)
			h.destroy(DestroyReasonFor(err), nil)
		}
	default:
		e.pool.Put(c)
		h.destroy(cell.ReasonProtocol, nil)
	}
}

// charge calls the Account hook; false means the circuit is closed or was
// destroyed for payment. Account runs under h.mu while the hop is not
// closed, and destroy closes it under h.mu before SessionClosed, so no
// Account (a cell racing DESTROY, a TOPUP_ACK or CONNECTED sent after it)
// follows SessionClosed and reopens the session in the payment ledger.
func (h *hop) charge() bool {
	h.mu.Lock()
	if h.state == hopClosed {
		h.mu.Unlock()
		return false
	}
	var err error
	if h.mintOnly {
		// §4.5: a mint-only circuit carries at most MintOnlyMaxCells.
		if h.mintCells++; h.mintCells > h.e.cfg.Limits.MintOnlyMaxCells {
			err = fmt.Errorf("%w: mint-only circuit over %d cells", ErrPayment, h.e.cfg.Limits.MintOnlyMaxCells)
		}
	}
	if err == nil && h.e.cfg.Account != nil {
		err = h.e.cfg.Account(h.cookie, cell.Size)
	}
	h.mu.Unlock()
	if err != nil {
		h.destroy(cell.ReasonPayment, nil)
		return false
	}
	return true
}

func (h *hop) fromNext(l *link, c *cell.Cell) {
	e := h.e
	h.mu.Lock()
	st, next := h.state, h.next
	h.mu.Unlock()
	if l != next || st == hopClosed {
		e.pool.Put(c)
		return
	}
	switch c.Command() {
	case cell.CmdDestroy:
		r := parseDestroy(c)
		e.pool.Put(c)
		h.destroyedBy(r, l)
	case cell.CmdCreated:
		var cd cell.Created
		err := cd.UnmarshalBody(c.Body())
		h.mu.Lock()
		ok := err == nil && h.state == hopExtending
		if ok {
			h.state = hopExtended
		}
		h.mu.Unlock()
		if !ok {
			e.pool.Put(c)
			h.destroy(cell.ReasonProtocol, nil)
			return
		}
		b, err := (&cell.Extended{Handshake: cd.Handshake}).AppendBinary(nil)
		e.pool.Put(c)
		if err == nil {
			err = h.sendBack(cell.RelayExtended, 0, b)
		}
		if err != nil {
			h.destroy(DestroyReasonFor(err), nil)
		}
	case cell.CmdRelay:
		if st != hopExtended {
			e.pool.Put(c)
			h.destroy(cell.ReasonProtocol, nil)
			return
		}
		if !h.charge() {
			e.pool.Put(c)
			return
		}
		c.SetCircID(h.prevID)
		f := e.testTamper.Load()
		dup := f != nil && (*f)(c, false)
		h.bmu.Lock()
		if h.bclosed {
			h.bmu.Unlock()
			e.pool.Put(c)
			return
		}
		// §3.2: wrap the next hop's onion in our backward layer.
		if err := wrapBackward(h.bwd, &h.cookie, h.depth, c.Body()); err != nil {
			h.bmu.Unlock()
			e.pool.Put(c)
			h.destroy(cell.ReasonInternal, nil)
			return
		}
		if dup {
			d := e.pool.Get()
			*d = *c
			_ = h.pq.push(d)
		}
		err := h.pq.push(c)
		h.bmu.Unlock()
		if errors.Is(err, errQueueFull) {
			h.queueFull(h.pq)
		}
	default:
		e.pool.Put(c)
		h.destroy(cell.ReasonProtocol, nil)
	}
}

// sendBack originates a relay message from this hop to the client (§3.2).
func (h *hop) sendBack(cmd cell.RelayCmd, stream uint16, data []byte) error {
	e := h.e
	if !h.charge() {
		return fmt.Errorf("%w: account refused", ErrPayment)
	}
	c := e.pool.Get()
	body := c.Body()
	n := cell.OnionLen(h.depth)
	if err := cell.EncodeRelay(body[hdrLen:n-cell.TagLen], cmd, stream, data); err != nil {
		e.pool.Put(c)
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	c.SetCircID(h.prevID)
	c.SetCommand(cell.CmdRelay)
	h.bmu.Lock()
	if h.bclosed {
		h.bmu.Unlock()
		e.pool.Put(c)
		return fmt.Errorf("hop: %w", ErrClosed)
	}
	// Room first, then the layer (reserve): a refused cell must not use
	// up a counter value.
	if err := h.pq.reserve(cmd != cell.RelayData); err != nil {
		h.bmu.Unlock()
		e.pool.Put(c)
		if errors.Is(err, errQueueFull) {
			h.queueFull(h.pq)
		}
		return err
	}
	if err := sealHere(h.bwd, &h.cookie, h.depth, body); err != nil {
		h.pq.unreserve()
		h.bmu.Unlock()
		e.pool.Put(c)
		return err
	}
	err := h.pq.pushReserved(c)
	h.bmu.Unlock()
	return err
}

// queueFull destroys the circuit because its queue q is full (§1.2): the
// neighbour on q's link reads more slowly than the circuit sends, or the
// circuit ignores its windows. It is logged once: the circuit is gone.
func (h *hop) queueFull(q *circQueue) {
	h.e.log.Debug("circuit queue full: circuit destroyed", "peer", q.l.peer, "cells", q.queueLen())
	h.destroy(cell.ReasonResource, nil)
}

// handleMsg handles a relay message addressed to this hop.
func (h *hop) handleMsg(st hopState, m cell.Relay) error {
	h.mu.Lock()
	mintOnly := h.mintOnly
	h.mu.Unlock()
	if mintOnly {
		if err := mintOnlyAllows(m); err != nil {
			return err
		}
	}
	switch m.Cmd {
	case cell.RelayDrop:
		if !h.takeDrop() {
			return fmt.Errorf("%w: more than %d DROPs in a burst", ErrResourceLimit, dropBurst)
		}
		return nil
	case cell.RelayExtend:
		return h.startExtend(st, m.Data)
	case cell.RelayTopUp:
		return h.startTopUp(m.Data)
	case cell.RelayBegin, cell.RelayData, cell.RelayEnd, cell.RelaySendme, cell.RelayResolve:
		if st != hopOpen {
			return fmt.Errorf("%w: %v at a middle hop", ErrProtocol, m.Cmd)
		}
		return h.exitSide().handle(m)
	}
	return fmt.Errorf("%w: %v sent to a hop", ErrProtocol, m.Cmd)
}

// mintOnlyAllows checks a relay message on a mint-only circuit (§4.5): no
// EXTEND, no RESOLVE, and BEGIN only for the mint service. Its error wraps
// ErrPayment: the circuit is destroyed with reason payment.
func mintOnlyAllows(m cell.Relay) error {
	switch m.Cmd {
	case cell.RelayExtend, cell.RelayResolve:
		return fmt.Errorf("%w: %v on a mint-only circuit", ErrPayment, m.Cmd)
	case cell.RelayBegin:
		var b cell.Begin
		if err := b.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if b.Service != cell.ServiceMint {
			return fmt.Errorf("%w: BEGIN %v on a mint-only circuit", ErrPayment, b.Service)
		}
	}
	return nil
}

// DROPs a hop accepts per circuit (PROTOCOL.md §3.4): a burst of
// dropBurst, then one per dropEvery. Clients send one per KeepAlive
// (2 min); DROPs are not counted in any window, so without this a
// neighbour could make a hop open cells for nothing at line rate.
const (
	dropBurst = 64
	dropEvery = 100 * time.Millisecond
)

// takeDrop takes a token for a DROP addressed to this hop; false means the
// circuit sent too many.
func (h *hop) takeDrop() bool {
	now := h.e.coarseNow()
	if h.dropAt == 0 {
		h.dropTokens, h.dropAt = dropBurst, now
	}
	if add := (now - h.dropAt) / int64(dropEvery); add > 0 {
		h.dropTokens = int(min(int64(h.dropTokens)+add, dropBurst))
		h.dropAt += add * int64(dropEvery)
	}
	if h.dropTokens == 0 {
		return false
	}
	h.dropTokens--
	return true
}

// context returns a ctx cancelled when the hop is destroyed or the engine
// closes.
func (h *hop) context() context.Context {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx == nil {
		h.ctx, h.cancel = context.WithCancel(h.e.ctx)
		if h.state == hopClosed {
			h.cancel()
		}
	}
	return h.ctx
}

// startExtend handles EXTEND (§5): it attaches a link to the next peer on
// an engine goroutine; CREATED comes back on that link's reader.
func (h *hop) startExtend(st hopState, data []byte) error {
	var ex cell.Extend
	if err := ex.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	pid, err := peer.IDFromBytes(ex.Peer)
	if err != nil {
		return fmt.Errorf("%w: extend peer: %w", ErrProtocol, err)
	}
	addrs := make([]ma.Multiaddr, 0, len(ex.Addrs))
	for _, b := range ex.Addrs {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			return fmt.Errorf("%w: extend addr: %w", ErrProtocol, err)
		}
		addrs = append(addrs, a)
	}
	hs := append([]byte(nil), ex.Handshake...)
	if h.depth >= cell.MaxHops {
		return fmt.Errorf("%w: extend past %d hops", ErrProtocol, cell.MaxHops)
	}
	h.mu.Lock()
	if h.state != hopOpen || h.exit != nil {
		h.mu.Unlock()
		return fmt.Errorf("%w: extend in state %d", ErrProtocol, st)
	}
	h.state = hopExtending
	h.extendBy = time.Now().Add(h.e.cfg.Limits.ExtendTimeout).UnixNano()
	h.mu.Unlock()
	if !h.e.goTracked(func() { h.extend(peer.AddrInfo{ID: pid, Addrs: addrs}, hs) }) {
		return fmt.Errorf("engine: %w", ErrClosed)
	}
	return nil
}

func (h *hop) extend(pi peer.AddrInfo, msg1 []byte) {
	e := h.e
	ctx, cancel := context.WithTimeout(h.context(), e.cfg.Limits.ExtendTimeout)
	defer cancel()
	l, err := e.linkTo(ctx, pi)
	if err != nil {
		e.log.Debug("extend failed", "err", err)
		h.destroy(cell.ReasonConnectFailed, nil)
		return
	}
	q := l.newQueue(h)
	if err := l.register(q); err != nil {
		h.destroy(DestroyReasonFor(err), nil)
		return
	}
	c := e.pool.Get()
	c.SetCircID(q.id)
	c.SetCommand(cell.CmdCreate)
	if err := (&cell.Create{Depth: uint8(h.depth + 1), Handshake: msg1}).MarshalBody(c.Body()); err != nil {
		e.pool.Put(c)
		l.unregister(q)
		h.destroy(cell.ReasonProtocol, nil)
		return
	}
	h.mu.Lock()
	if h.state != hopExtending {
		h.mu.Unlock()
		e.pool.Put(c)
		l.unregister(q)
		return
	}
	h.next, h.nextID, h.nq = l, q.id, q
	h.mu.Unlock()
	_ = q.push(c) // an empty queue has room; a closed link destroys us
}

// extendExpired reports an EXTEND that got no CREATED in time.
func (h *hop) extendExpired(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == hopExtending && now.UnixNano() > h.extendBy
}

// startTopUp runs the TopUp hook for a TOPUP and answers TOPUP_ACK.
func (h *hop) startTopUp(data []byte) error {
	var t cell.TopUp
	if err := t.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	payload := append([]byte(nil), t.Payload...)
	h.mu.Lock()
	busy := h.topping
	h.topping = true
	h.mu.Unlock()
	if busy {
		return fmt.Errorf("%w: TOPUP while one is running", ErrProtocol)
	}
	ok := h.e.goTracked(func() {
		ack := cell.TopUpAck{Status: TopUpRefused}
		if f := h.e.cfg.TopUp; f != nil {
			ctx, cancel := context.WithTimeout(h.context(), h.e.cfg.Limits.BeginTimeout)
			out, err := f(ctx, h.cookie, payload)
			cancel()
			if err == nil {
				ack = cell.TopUpAck{Status: TopUpOK, Payload: out}
			} else if len(out) > 0 {
				ack.Payload = out // why it was refused
			}
		}
		h.mu.Lock()
		h.topping = false
		h.mu.Unlock()
		b, err := ack.AppendBinary(nil)
		if err == nil {
			err = h.sendBack(cell.RelayTopUpAck, 0, b)
		}
		if err != nil && !errors.Is(err, ErrClosed) {
			h.destroy(DestroyReasonFor(err), nil)
		}
	})
	if !ok {
		return fmt.Errorf("engine: %w", ErrClosed)
	}
	return nil
}

// TOPUP_ACK status values this engine sends (VOUCHERS.md may add more).
const (
	TopUpOK      = 0 // the payload was accepted; Payload is the hook's answer
	TopUpRefused = 1 // no TopUp hook, or it failed
)

// destroy tears the hop down for a reason of its own: a violation, a
// refusal, a timeout, a full queue, or from, the link that closed. r goes
// in every DESTROY it sends (its neighbours learn it) and, inside this
// hop's layer, in a TEARDOWN to the client (PROTOCOL.md §2.3, §5.4).
// Safe to call many times.
func (h *hop) destroy(r cell.Reason, from *link) { h.teardown(r, r, from) }

// destroyedBy handles a DESTROY with reason r that arrived on from. It is
// passed on with reason none, so hops that collude cannot signal each
// other through reasons across an honest hop; r reaches the client only in
// this hop's TEARDOWN, when from is the next hop (§2.3).
func (h *hop) destroyedBy(r cell.Reason, from *link) { h.teardown(r, cell.ReasonNone, from) }

// teardown sends DESTROY with reason wire to every neighbour except from,
// and TEARDOWN with reason r to the client unless from is the previous
// hop. The client's TEARDOWN follows every cell already queued toward it
// (its layer's counter requires them); what was queued toward the next hop
// is dropped.
func (h *hop) teardown(r, wire cell.Reason, from *link) {
	e := h.e
	h.mu.Lock()
	if h.state == hopClosed {
		h.mu.Unlock()
		return
	}
	opened := h.state != hopPending
	h.state = hopClosed
	next, nq, ex, cancel := h.next, h.nq, h.exit, h.cancel
	h.mu.Unlock()

	h.bmu.Lock()
	if from != h.prev {
		var td *cell.Cell
		if h.bwd != nil && !h.bclosed {
			td = h.teardownCell(r)
		}
		h.pq.finish(td, wire, true)
	} else {
		h.pq.drop()
	}
	h.bclosed = true
	h.bmu.Unlock()
	h.prev.unregister(h.pq)
	if nq != nil {
		if from != next {
			nq.finish(nil, wire, false)
		} else {
			nq.drop()
		}
		next.unregister(nq)
	}
	if cancel != nil {
		cancel()
	}
	if ex != nil {
		ex.ep.shutdown(&CloseError{Reason: r, Remote: from != nil})
	}
	e.mu.Lock()
	if _, ok := e.hops[h]; ok {
		delete(e.hops, h)
		e.mem.release(circuitCost)
		if e.perPeer[h.prev.peer]--; e.perPeer[h.prev.peer] <= 0 {
			delete(e.perPeer, h.prev.peer)
		}
	}
	e.mu.Unlock()
	if opened && e.cfg.SessionClosed != nil {
		e.cfg.SessionClosed(h.cookie)
	}
}

// teardownCell returns a TEARDOWN with reason r sealed in the backward
// layer (§5.4), or nil. It is charged like any cell the hop originates,
// but a session that cannot pay still gets it: it is the circuit's last.
// Caller holds bmu, with bwd set.
func (h *hop) teardownCell(r cell.Reason) *cell.Cell {
	e := h.e
	var buf [1]byte
	data, err := (&cell.Teardown{Reason: r}).AppendBinary(buf[:0])
	if err != nil {
		return nil
	}
	c := e.pool.Get()
	body := c.Body()
	n := cell.OnionLen(h.depth)
	if err := cell.EncodeRelay(body[hdrLen:n-cell.TagLen], cell.RelayTeardown, 0, data); err != nil {
		e.pool.Put(c)
		return nil
	}
	c.SetCircID(h.prevID)
	c.SetCommand(cell.CmdRelay)
	if err := sealHere(h.bwd, &h.cookie, h.depth, body); err != nil {
		e.pool.Put(c)
		return nil
	}
	if e.cfg.Account != nil {
		_ = e.cfg.Account(h.cookie, cell.Size)
	}
	return c
}

// parseDestroy reads a DESTROY's reason; a malformed one counts as a
// protocol violation.
func parseDestroy(c *cell.Cell) cell.Reason {
	var d cell.Destroy
	if err := d.UnmarshalBody(c.Body()); err != nil {
		return cell.ReasonProtocol
	}
	return d.Reason
}
