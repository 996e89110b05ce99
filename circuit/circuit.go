package circuit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// HopInfo names one hop of a path: its peer, where to reach it, and its
// onion key (from its advert).
type HopInfo struct {
	Peer     peer.ID
	Addrs    []ma.Multiaddr
	OnionKey [32]byte
	// Prepay, if set, is what this hop's handshake offers (PROTOCOL.md
	// §4.1): vouchers for a paid hop, or a mint-only request. Nil offers
	// nothing, which a paid hop refuses.
	Prepay *Prepay
}

// Prepay is the client's side of paying a hop in its handshake
// (PROTOCOL.md §4.1). Build calls Offer just before it sends the hop's
// message 1, after every earlier hop answered; if Offer returned no error,
// Build then calls Done exactly once, before it moves on to the next hop or
// returns.
type Prepay struct {
	// Offer returns the offer for message 1; ctx is the build's. An error
	// fails the build at this hop with nothing sent to it (Done is not
	// called).
	Offer func(ctx context.Context) (cell.Offer, error)
	// Done reports the outcome: answered is true with the hop's
	// authenticated answer from message 2, false when message 1 was (or may
	// have been) sent and no valid message 2 came back, so whether the hop
	// redeemed the offer is unknown. A non-nil error fails the build at this
	// hop (the caller refuses the answer, e.g. a mint-only grant it did not
	// ask for). A refusal (a paid answer with cell.AnswerRefused) fails the
	// build whatever Done returns.
	Done func(a cell.Answer, answered bool) error
}

// RefusedError is the error Build wraps when a hop refused its handshake
// for payment (PROTOCOL.md §4.4): Ack is the hop's answer, saying why
// (payment parses it). It wraps ErrPayment.
type RefusedError struct {
	Ack []byte
}

func (e *RefusedError) Error() string { return "hop refused the handshake's payment" }
func (e *RefusedError) Unwrap() error { return ErrPayment }

// clientHop is the client's keys for one hop; fwd is guarded by
// Circuit.sendMu, bwd is owned by the circuit's goroutine.
type clientHop struct {
	info HopInfo
	onionKeys
}

// Circuit is a circuit this engine built. One goroutine (run) owns its
// incoming side: it opens every backward cell and dispatches the message;
// other goroutines send cells under sendMu and wait on channels. All
// methods are safe for concurrent use.
type Circuit struct {
	e      *Engine
	id     uint64
	link   *link
	q      *circQueue // toward the first hop; ordered by sendMu
	circID cell.CircID
	ep     *endpoint
	want   int      // len(path)
	prtt   *pathRTT // this path's smallest RTT, shared with the engine's other circuits over it

	in   chan *cell.Cell // from the link reader to run
	ctrl chan []byte     // CREATED / EXTENDED handshakes, to Build

	hops  [cell.MaxHops]*clientHop // hops[:nhops] are complete
	keys  [cell.MaxHops]*onionKeys // &hops[i].onionKeys
	nhops atomic.Int32

	sendMu   sync.Mutex   // guards the hops' fwd layers and the order of cells sent
	lastSent atomic.Int64 // unix nanos of the last RELAY cell sent
	// teardown is the first TEARDOWN received (§5.4), depth<<8 | reason,
	// or 0: the deepest hop that reported why the circuit is going away.
	teardown atomic.Uint32
	// cells[i] counts the RELAY cells hop i has carried for us in either
	// direction, as its Account hook counts them (HopBytes).
	cells [cell.MaxHops]atomic.Uint64

	topMu [cell.MaxHops]sync.Mutex  // one TopUp per hop at a time
	tmu   sync.Mutex                // guards topCh
	topCh [cell.MaxHops]chan []byte // status | payload, to TopUp

	closeOnce sync.Once
	done      chan struct{}
	err       error // set before done is closed
}

// Build makes a circuit through path (1..8 hops, first hop first): CREATE
// to the first hop, then one EXTEND per further hop (PROTOCOL.md §2.1, §4,
// §5). On error nothing is left behind; the error wraps ErrTimeout,
// ErrUnreachable, ErrProtocol (e.g. a wrong onion key), ErrResourceLimit,
// ErrPayment or ErrClosed.
func (e *Engine) Build(ctx context.Context, path []HopInfo) (*Circuit, error) {
	if len(path) == 0 || len(path) > cell.MaxHops {
		return nil, fmt.Errorf("build: %d hops: %w", len(path), ErrProtocol)
	}
	first := path[0]
	l, err := e.linkTo(ctx, peer.AddrInfo{ID: first.Peer, Addrs: first.Addrs})
	if err != nil {
		return nil, fmt.Errorf("build: %w", &BuildError{Hop: 0, Err: err})
	}
	c := &Circuit{
		e:    e,
		id:   newCircuitID(),
		want: len(path),
		link: l,
		in:   make(chan *cell.Cell, 64),
		ctrl: make(chan []byte, 1),
		done: make(chan struct{}),
	}
	c.ep = newEndpoint(e, cell.MaxData(len(path)), c.sendToLast)
	c.ep.pending = make(map[uint16]chan reply)
	c.q = l.newQueue(c)
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fmt.Errorf("build: engine: %w", ErrClosed)
	}
	if err := l.register(c.q); err != nil {
		e.mu.Unlock()
		return nil, fmt.Errorf("build: %w", err)
	}
	c.circID = c.q.id
	e.circuits[c] = struct{}{}
	c.prtt = e.pathRTTLocked(path)
	if c.ep.cc != nil {
		c.ep.cc.shared = c.prtt
	}
	e.wg.Add(1)
	e.mu.Unlock()
	go c.run()

	if err := c.build(ctx, path); err != nil {
		reason := cell.ReasonRequested
		switch {
		case errors.Is(err, ErrClosed):
			// A hop tore it down; closeWith already ran.
		case errors.Is(err, ErrTimeout):
			reason = cell.ReasonTimeout
		case errors.Is(err, ErrProtocol):
			reason = cell.ReasonProtocol
		}
		c.closeWith(reason, false, true)
		return nil, fmt.Errorf("build: %w", err)
	}
	return c, nil
}

// ForOthers marks c as carrying what others ask for rather than what
// this node's own users send (an onion service's rendezvous circuit: a
// remote client starts it and chooses what flows): from now on its cells
// queued toward the first hop count against Limits.MaxQueuedCells and
// the memory budget, and it is cut with reason resource limit past its
// fair share, as a relayed circuit is. A node's own circuits are
// otherwise bounded only by their windows (PROTOCOL.md §1.2). Call it
// right after Build; calling it again does nothing.
func (c *Circuit) ForOthers() { c.q.share() }

// BuildError is the error Build returns when a hop failed: Hop is its index
// in the path (0-based), so a caller can blame that node alone rather than
// every node of the path. It wraps the cause.
type BuildError struct {
	Hop int
	Err error
}

func (e *BuildError) Error() string { return fmt.Sprintf("hop %d: %v", e.Hop+1, e.Err) }
func (e *BuildError) Unwrap() error { return e.Err }

// build runs the handshakes hop by hop; an error names the hop that failed.
func (c *Circuit) build(ctx context.Context, path []HopInfo) error {
	for i, hi := range path {
		if err := c.buildHop(ctx, i, hi); err != nil {
			return &BuildError{Hop: i, Err: err}
		}
	}
	return nil
}

func (c *Circuit) buildHop(ctx context.Context, i int, hi HopInfo) (err error) {
	var offer []byte
	var ans cell.Answer
	answered := false
	if p := hi.Prepay; p != nil {
		off, err := p.Offer(ctx)
		if err != nil {
			return err
		}
		// From here the hop may see the offer: Done learns the outcome,
		// unknown unless message 2 came back.
		defer func() {
			if derr := p.Done(ans, answered); derr != nil && err == nil {
				err = derr
			}
		}()
		if offer, err = off.AppendBinary(nil); err != nil {
			return err
		}
	}
	hs, msg1, err := startHandshake(hi.OnionKey, offer)
	if err != nil {
		return err
	}
	defer hs.wipe() // also when the hop never answers
	msg2, err := c.sendHandshake(ctx, i, hi, msg1, c.e.cfg.Limits)
	if err != nil {
		return err
	}
	keys, a, err := hs.finish(msg2)
	if err != nil {
		return err
	}
	ans, answered = a, true
	if a.Paid && a.Status == cell.AnswerRefused {
		keys.wipe()
		return &RefusedError{Ack: append([]byte(nil), a.Ack...)}
	}
	return c.addHop(i, hi, keys)
}

// sendHandshake sends message 1 to hop i (CREATE for the first hop, EXTEND
// through the last built hop for the others) and waits for message 2.
func (c *Circuit) sendHandshake(ctx context.Context, i int, hi HopInfo, msg1 []byte, lim Limits) ([]byte, error) {
	wait := lim.CreateTimeout
	if i == 0 {
		cl := c.e.pool.Get()
		cl.SetCircID(c.circID)
		cl.SetCommand(cell.CmdCreate)
		if err := (&cell.Create{Depth: 1, Handshake: msg1}).MarshalBody(cl.Body()); err != nil {
			c.e.pool.Put(cl)
			return nil, err
		}
		c.sendMu.Lock()
		err := c.q.push(cl)
		c.sendMu.Unlock()
		if err != nil {
			return nil, err
		}
	} else {
		ext := cell.Extend{Peer: []byte(hi.Peer), OnionKey: hi.OnionKey, Handshake: msg1}
		for _, a := range hi.Addrs {
			if b := a.Bytes(); len(b) <= cell.MaxAddrLen && len(ext.Addrs) < cell.MaxExtendAddrs {
				ext.Addrs = append(ext.Addrs, b)
			}
		}
		b, err := ext.AppendBinary(nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if err := c.sendRelay(i, cell.RelayExtend, 0, b); err != nil {
			return nil, err
		}
		wait += lim.ExtendTimeout
	}
	return c.waitCtrl(ctx, wait)
}

// addHop installs hop i's layers from its handshake keys.
func (c *Circuit) addHop(i int, hi HopInfo, keys hopKeys) error {
	fwd, err1 := newLayer(keys.fwd)
	bwd, err2 := newLayer(keys.bwd)
	keys.wipe()
	if err1 != nil || err2 != nil {
		return fmt.Errorf("build: layer: %w %w", err1, err2)
	}
	c.sendMu.Lock()
	ch := &clientHop{info: hi, onionKeys: onionKeys{cookie: keys.cookie, fwd: fwd, bwd: bwd}}
	c.hops[i], c.keys[i] = ch, &ch.onionKeys
	c.nhops.Store(int32(i + 1))
	c.sendMu.Unlock()
	return nil
}

// waitCtrl waits for the next CREATED or EXTENDED handshake.
func (c *Circuit) waitCtrl(ctx context.Context, d time.Duration) ([]byte, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case b := <-c.ctrl:
		return b, nil
	case <-c.done:
		return nil, c.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrTimeout, ctx.Err())
	case <-t.C:
		return nil, fmt.Errorf("%w: no answer from hop", ErrTimeout)
	}
}

// handleCell implements circEnd; it runs on the link reader.
func (c *Circuit) handleCell(_ *link, cl *cell.Cell) {
	select {
	case c.in <- cl:
	case <-c.done:
		c.e.pool.Put(cl)
	}
}

// linkClosed implements circEnd. It queues a nil cell behind the cells
// the link already delivered, so that a DESTROY that came just before the
// link closed gives the reason; if the queue is full it closes at once.
func (c *Circuit) linkClosed(*link) {
	select {
	case c.in <- nil:
	default:
		c.closeWith(cell.ReasonLinkClosed, true, false)
	}
}

// run is the circuit's owner goroutine.
func (c *Circuit) run() {
	defer c.e.wg.Done()
	for {
		select {
		case cl := <-c.in:
			if cl == nil {
				c.closeWith(cell.ReasonLinkClosed, true, false)
				return
			}
			err := c.handle(cl)
			c.e.pool.Put(cl)
			if err != nil {
				c.e.log.Debug("circuit protocol violation", "err", err)
				c.closeWith(cell.ReasonProtocol, false, true)
				return
			}
		case <-c.done:
			return
		}
	}
}

func (c *Circuit) handle(cl *cell.Cell) error {
	n := int(c.nhops.Load())
	switch cl.Command() {
	case cell.CmdDestroy:
		c.closeWith(parseDestroy(cl), true, false)
		return nil
	case cell.CmdCreated:
		var cd cell.Created
		if err := cd.UnmarshalBody(cl.Body()); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if n != 0 {
			return fmt.Errorf("%w: unexpected CREATED", ErrProtocol)
		}
		return c.deliverCtrl(cd.Handshake)
	case cell.CmdRelay:
	default:
		return fmt.Errorf("%w: command %v", ErrProtocol, cl.Command())
	}
	// §3.2: peel layers from hop 1 until one says "here".
	k, region, err := openBackward(c.keys[:n], cl.Body())
	if err != nil {
		if errors.Is(err, errAuth) {
			c.e.authFail.Add(1)
		}
		return err
	}
	for i := range k {
		c.cells[i].Add(1) // hops 1..k passed it back
	}
	m, err := cell.DecodeRelay(region)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return c.handleMsg(k, n, m)
}

func (c *Circuit) deliverCtrl(hs []byte) error {
	select {
	case c.ctrl <- append([]byte(nil), hs...):
		return nil
	default:
		return fmt.Errorf("%w: unexpected handshake", ErrProtocol)
	}
}

// handleMsg dispatches a relay message from hop k of n.
func (c *Circuit) handleMsg(k, n int, m cell.Relay) error {
	switch m.Cmd {
	case cell.RelayDrop:
		return nil
	case cell.RelayExtended:
		var x cell.Extended
		if err := x.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if k != n {
			return fmt.Errorf("%w: EXTENDED from hop %d of %d", ErrProtocol, k, n)
		}
		return c.deliverCtrl(x.Handshake)
	case cell.RelayTeardown:
		// §5.4: the hop's DESTROY (with a generic reason) follows; the
		// first TEARDOWN is from the deepest hop that reported.
		var t cell.Teardown
		if err := t.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		c.teardown.CompareAndSwap(0, uint32(k)<<8|uint32(t.Reason))
		return nil
	case cell.RelayTopUpAck:
		var a cell.TopUpAck
		if err := a.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		c.tmu.Lock()
		ch := c.topCh[k-1]
		c.topCh[k-1] = nil
		c.tmu.Unlock()
		if ch == nil {
			return fmt.Errorf("%w: unexpected TOPUP_ACK", ErrProtocol)
		}
		ch <- append([]byte{a.Status}, a.Payload...)
		return nil
	}
	if k != n || !c.built() {
		return fmt.Errorf("%w: %v from hop %d of %d", ErrProtocol, m.Cmd, k, n)
	}
	switch m.Cmd {
	case cell.RelayData:
		return c.ep.onData(m.StreamID, m.Data)
	case cell.RelaySendme:
		return c.ep.onSendme(m.StreamID)
	case cell.RelayEnd:
		var end cell.End
		if err := end.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		c.ep.onEnd(m.StreamID, end)
		return nil
	case cell.RelayConnected:
		var x cell.Connected
		if err := x.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return c.ep.onReply(m.StreamID, reply{cmd: m.Cmd, addr: x.Addr})
	case cell.RelayResolved:
		var x cell.Resolved
		if err := x.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return c.ep.onReply(m.StreamID, reply{cmd: m.Cmd, addr: x.Addr, ttl: x.TTL})
	}
	return fmt.Errorf("%w: %v sent to a client", ErrProtocol, m.Cmd)
}

// built reports whether every hop of the path has answered.
func (c *Circuit) built() bool { return int(c.nhops.Load()) == c.want }

// sendRelay seals a relay message for hop depth (1-based) in every layer
// from depth down to 1, in place, and queues it (§3.1).
func (c *Circuit) sendRelay(depth int, cmd cell.RelayCmd, stream uint16, data []byte) error {
	cl := c.e.pool.Get()
	body := cl.Body()
	off, L := onionOff(depth), cell.OnionLen(depth)
	if err := cell.EncodeRelay(body[off+hdrLen:off+L-cell.TagLen], cmd, stream, data); err != nil {
		c.e.pool.Put(cl)
		return fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	cl.SetCircID(c.circID)
	cl.SetCommand(cell.CmdRelay)
	err := c.sealAndQueue(depth, cl)
	if errors.Is(err, errQueueFull) {
		// More cells than flow control allows in flight: the link to the
		// first hop has stalled (§1.2).
		c.closeWith(cell.ReasonResource, false, true)
	}
	return err
}

// sealAndQueue seals cl for hop depth and queues it, under sendMu.
func (c *Circuit) sealAndQueue(depth int, cl *cell.Cell) error {
	c.sendMu.Lock()
	defer c.sendMu.Unlock()
	select {
	case <-c.done:
		c.e.pool.Put(cl)
		return c.err
	default:
	}
	if depth > int(c.nhops.Load()) {
		c.e.pool.Put(cl)
		return fmt.Errorf("%w: no hop %d", ErrProtocol, depth)
	}
	if err := sealForward(c.keys[:depth], depth, cl.Body()); err != nil {
		c.e.pool.Put(cl)
		return err
	}
	c.lastSent.Store(c.e.coarseNow())
	if err := c.q.push(cl); err != nil {
		return err
	}
	for i := range depth {
		c.cells[i].Add(1) // hops 1..depth pass it on or handle it
	}
	return nil
}

// HopBytes reports, per hop (first hop first), the bytes of RELAY cells
// that hop has carried for this circuit in both directions, counted the
// way a paid hop charges its session (cell.Size per cell, PROTOCOL.md
// §5.3), so a client can check what each hop bills. Cells still in flight
// are counted at the client before the hop sees them.
func (c *Circuit) HopBytes() []uint64 {
	out := make([]uint64, c.nhops.Load())
	for i := range out {
		out[i] = c.HopCarried(i)
	}
	return out
}

// HopCarried is HopBytes for hop i (0-based) alone, without allocating,
// for callers on a stream's read and write path; 0 when there is no hop
// i.
func (c *Circuit) HopCarried(i int) uint64 {
	if i < 0 || i >= int(c.nhops.Load()) {
		return 0
	}
	return c.cells[i].Load() * cell.Size
}

// sendToLast sends to the last hop; it is the endpoint's send function.
func (c *Circuit) sendToLast(cmd cell.RelayCmd, stream uint16, data []byte) error {
	return c.sendRelay(int(c.nhops.Load()), cmd, stream, data)
}

// closeWith tears the circuit down once. remote says a hop did it: then a
// TEARDOWN received before gives the reason and the hop (§5.4).
// sendDestroy sends DESTROY to the first hop; what was still queued for it
// is dropped.
func (c *Circuit) closeWith(r cell.Reason, remote, sendDestroy bool) {
	c.closeOnce.Do(func() {
		c.sendMu.Lock()
		ce := &CloseError{Reason: r, Remote: remote}
		if td := c.teardown.Load(); remote && td != 0 {
			ce.Reason, ce.Depth = cell.Reason(td), int(td>>8)
		}
		c.err = ce
		close(c.done)
		if sendDestroy {
			c.q.finish(nil, r, false)
		} else {
			c.q.drop()
		}
		c.sendMu.Unlock()
		c.link.unregister(c.q)
		c.ep.shutdown(c.err)
		c.e.mu.Lock()
		delete(c.e.circuits, c)
		c.e.releasePathRTTLocked(c.prtt)
		c.e.mu.Unlock()
	})
}

// ID returns an identifier for the circuit, unique within the process.
// SetGrowthGate sets a check this end consults before it widens one of
// the circuit's streams' receive windows beyond the base window (an extra
// stream SENDME, PROTOCOL.md §5.2). window is what the far end could then
// send on one stream ahead of what this end has read, in bytes of whole
// cells: the base stream window plus all the extra credit the circuit's
// streams would hold after the widening. gate returning false keeps the
// window as it is. The client's payment schedule sets it so that what is
// in flight never outruns what each hop has been paid (a hop cuts a
// circuit that goes past its prepaid allowance and grace). gate is called
// with a stream's lock held: it must be cheap, must not block and must not
// call back into the circuit. nil removes the gate.
func (c *Circuit) SetGrowthGate(gate func(window int64) bool) {
	if gate == nil {
		c.ep.gate.Store(nil)
		return
	}
	c.ep.gate.Store(&gate)
}

func (c *Circuit) ID() uint64 { return c.id }

// Path returns a copy of the hops the circuit was built through.
func (c *Circuit) Path() []HopInfo {
	n := int(c.nhops.Load())
	out := make([]HopInfo, n)
	for i := range n {
		out[i] = c.hops[i].info
	}
	return out
}

// Cookie returns the session cookie hop i (0-based, as in Path) issued;
// the zero value if there is no such hop.
func (c *Circuit) Cookie(i int) [cell.CookieLen]byte {
	if i < 0 || i >= int(c.nhops.Load()) {
		return [cell.CookieLen]byte{}
	}
	return c.hops[i].cookie
}

// NumStreams returns the number of open streams.
func (c *Circuit) NumStreams() int {
	c.ep.mu.Lock()
	defer c.ep.mu.Unlock()
	return len(c.ep.streams)
}

// Close destroys the circuit (DESTROY reason requested); its streams fail
// with an error wrapping ErrClosed. Safe to call twice.
func (c *Circuit) Close() error {
	c.closeWith(cell.ReasonRequested, false, true)
	return nil
}

// Done is closed when the circuit is torn down, by either side.
func (c *Circuit) Done() <-chan struct{} { return c.done }

// Err returns nil while the circuit is open, then a *CloseError (which
// wraps ErrClosed and the reason's sentinel).
func (c *Circuit) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Dial opens a stream to target through the last hop's service svc; BEGIN
// carries target's canonical form. The error wraps an errors.go sentinel:
// the END reason the last hop sent (ErrExitPolicy, ErrConnRefused, ...;
// for END tor-socks a *TorSocksError with the gateway's tor's reply byte,
// matching ErrTorSocks), ErrResourceLimit, ErrTimeout when ctx ends,
// ErrClosed, or ErrProtocol for a zero target.
func (c *Circuit) Dial(ctx context.Context, svc cell.Service, target cell.Target) (*Stream, error) {
	b, err := (&cell.Begin{Service: svc, Target: target}).AppendBinary(nil)
	if err != nil {
		return nil, fmt.Errorf("dial: %w: %w", ErrProtocol, err)
	}
	ep := c.ep
	ch := make(chan reply, 1)
	ep.mu.Lock()
	id, err := ep.allocIDLocked()
	var s *Stream
	if err == nil {
		s = newStream(ep, id)
		s.local = StreamAddr{Circuit: c.id, Stream: id}
		s.remote = s.local
		err = ep.addLocked(s)
	}
	if err != nil {
		ep.mu.Unlock()
		return nil, fmt.Errorf("dial: %w", err)
	}
	ep.pending[id] = ch
	ep.mu.Unlock()
	if err := c.sendToLast(cell.RelayBegin, id, b); err != nil {
		c.forget(id)
		_ = s.Close()
		return nil, fmt.Errorf("dial: %w", err)
	}
	select {
	case r := <-ch:
		if r.cmd == cell.RelayConnected {
			s.remote = remoteAddrFor(r.addr, target.Port(), s.local)
			return s, nil
		}
		_ = s.Close()
		if r.end.Reason == cell.EndDone {
			r.end.Reason = cell.EndMisc
		}
		return nil, fmt.Errorf("dial: %w", &endError{reason: r.end.Reason, code: r.end.SocksCode})
	case <-ctx.Done():
		c.forget(id)
		_ = s.Close()
		return nil, fmt.Errorf("dial: %w: %w", ErrTimeout, ctx.Err())
	case <-c.done:
		return nil, fmt.Errorf("dial: %w", c.err)
	}
}

// forget drops a pending request.
func (c *Circuit) forget(id uint16) {
	c.ep.mu.Lock()
	delete(c.ep.pending, id)
	c.ep.mu.Unlock()
}

// Resolve asks the last hop to resolve host, a name or IP literal that
// cell.CheckHost accepts (RESOLVE carries its canonical form). The error
// wraps ErrResolveFailed (or another END sentinel), ErrTimeout, ErrClosed,
// or ErrProtocol with cell.ErrBadHost for a host outside the grammar.
func (c *Circuit) Resolve(ctx context.Context, host string) (netip.Addr, error) {
	host, err := cell.CheckHost(host)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve: %w: %w", ErrProtocol, err)
	}
	b, err := (&cell.Resolve{Host: host}).AppendBinary(nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolve: %w: %w", ErrProtocol, err)
	}
	ep := c.ep
	ch := make(chan reply, 1)
	ep.mu.Lock()
	id, err := ep.allocIDLocked()
	if err == nil && len(ep.streams)+len(ep.pending) >= ep.maxStreams {
		err = fmt.Errorf("%w: %d streams on circuit", ErrResourceLimit, ep.maxStreams)
	}
	if err == nil && ep.err != nil {
		err = ep.err
	}
	if err != nil {
		ep.mu.Unlock()
		return netip.Addr{}, fmt.Errorf("resolve: %w", err)
	}
	ep.pending[id] = ch
	ep.mu.Unlock()
	if err := c.sendToLast(cell.RelayResolve, id, b); err != nil {
		c.forget(id)
		return netip.Addr{}, fmt.Errorf("resolve: %w", err)
	}
	select {
	case r := <-ch:
		if r.cmd == cell.RelayResolved {
			return r.addr, nil
		}
		if r.end.Reason == cell.EndDone {
			r.end.Reason = cell.EndResolveFailed
		}
		return netip.Addr{}, fmt.Errorf("resolve: %w", &endError{reason: r.end.Reason, code: r.end.SocksCode})
	case <-ctx.Done():
		c.forget(id)
		return netip.Addr{}, fmt.Errorf("resolve: %w: %w", ErrTimeout, ctx.Err())
	case <-c.done:
		return netip.Addr{}, fmt.Errorf("resolve: %w", c.err)
	}
}

// TopUp sends payload to hop i (0-based, as in Path) in a TOPUP and returns
// the TOPUP_ACK payload. A non-zero status is an error wrapping ErrPayment,
// returned with the payload (the hop's reason, possibly empty). One TopUp
// per hop runs at a time; others wait.
func (c *Circuit) TopUp(ctx context.Context, i int, payload []byte) ([]byte, error) {
	if i < 0 || i >= int(c.nhops.Load()) {
		return nil, fmt.Errorf("topup: no hop %d: %w", i, ErrProtocol)
	}
	b, err := (&cell.TopUp{Payload: payload}).AppendBinary(nil)
	if err != nil {
		return nil, fmt.Errorf("topup: %w: %w", ErrProtocol, err)
	}
	c.topMu[i].Lock()
	defer c.topMu[i].Unlock()
	ch := make(chan []byte, 1)
	c.tmu.Lock()
	c.topCh[i] = ch
	c.tmu.Unlock()
	drop := func() {
		c.tmu.Lock()
		if c.topCh[i] == ch {
			c.topCh[i] = nil
		}
		c.tmu.Unlock()
	}
	if err := c.sendRelay(i+1, cell.RelayTopUp, 0, b); err != nil {
		drop()
		return nil, fmt.Errorf("topup: %w", err)
	}
	select {
	case ack := <-ch:
		if ack[0] != TopUpOK {
			return ack[1:], fmt.Errorf("topup: status %d: %w", ack[0], ErrPayment)
		}
		return ack[1:], nil
	case <-ctx.Done():
		// The ack may still come; the circuit cannot match it to a later
		// TopUp, so a timed-out TopUp ruins the circuit for top-ups.
		drop()
		c.closeWith(cell.ReasonTimeout, false, true)
		return nil, fmt.Errorf("topup: %w: %w", ErrTimeout, ctx.Err())
	case <-c.done:
		drop()
		return nil, fmt.Errorf("topup: %w", c.err)
	}
}

// pathRTTLocked returns the shared smallest RTT of path, taking a
// reference. e.mu must be held.
func (e *Engine) pathRTTLocked(path []HopInfo) *pathRTT {
	var b strings.Builder
	for _, h := range path {
		b.WriteString(string(h.Peer))
		b.WriteByte(0)
	}
	k := b.String()
	p := e.pathRTTs[k]
	if p == nil {
		if e.pathRTTs == nil {
			e.pathRTTs = make(map[string]*pathRTT)
		}
		p = &pathRTT{key: k}
		e.pathRTTs[k] = p
	}
	p.refs++
	return p
}

// releasePathRTTLocked drops a reference from pathRTTLocked; the last one
// forgets the path. e.mu must be held.
func (e *Engine) releasePathRTTLocked(p *pathRTT) {
	if p == nil {
		return
	}
	if p.refs--; p.refs == 0 {
		delete(e.pathRTTs, p.key)
	}
}
