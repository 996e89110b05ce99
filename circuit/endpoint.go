package circuit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// endpoint is the stream-carrying end of a circuit: the client side, or
// the last hop. It owns the stream table and both circuit windows
// (PROTOCOL.md §5.2). send seals one relay message toward the other end and
// queues it; it may block while the link queue is full.
type endpoint struct {
	e          *Engine
	send       func(cmd cell.RelayCmd, stream uint16, data []byte) error
	maxData    int // DATA bytes per cell
	maxStreams int
	done       chan struct{} // closed by shutdown
	// mem is the engine's memory budget at the last hop, which charges
	// every buffered DATA cell to it; nil at the client, whose buffers
	// are its own streams'.
	mem *memBudget

	mu      sync.Mutex // guards everything below, and Stream.sendWin/wErr
	err     error      // why the circuit closed; set before done is closed
	streams map[uint16]*Stream
	pending map[uint16]chan reply // client: BEGIN or RESOLVE awaiting an answer
	busy    int                   // last hop: streams and RESOLVEs holding a slot (claimLocked)
	nextID  uint16
	// Send side of the circuit window (§5.2): we may send a DATA cell
	// while inflight < cwnd(). cc is nil with Limits.FixedWindows, and
	// the window is then circWindow.
	inflight int
	cc       *vegas
	sentN    int         // DATA cells sent since the last one a SENDME will acknowledge
	stamps   []time.Time // send times of the cells the next SENDMEs acknowledge, oldest first
	now      func() time.Time
	recvWin  int           // circuit DATA cells the peer may still send
	recvN    int           // DATA cells received since our last circuit SENDME
	winCh    chan struct{} // closed and replaced when a send window grows or a stream ends

	// grow is false with Limits.FixedWindows: streams keep the window
	// they started with. extra is the stream credit granted beyond
	// streamWindow to this circuit's open streams, at most streamMaxExtra.
	grow  bool
	extra atomic.Int64
	// gate, if set (Circuit.SetGrowthGate), must also agree before a
	// stream's window grows.
	gate atomic.Pointer[func(window int64) bool]
}

// reply is the answer to a BEGIN or RESOLVE, copied out of its cell.
type reply struct {
	cmd  cell.RelayCmd // RelayConnected, RelayResolved or RelayEnd
	addr netip.Addr
	ttl  uint32
	end  cell.End // RelayEnd: the reason and, for tor-socks, tor's code
}

func newEndpoint(e *Engine, maxData int, send func(cell.RelayCmd, uint16, []byte) error) *endpoint {
	ep := &endpoint{
		e:          e,
		send:       send,
		maxData:    maxData,
		maxStreams: e.cfg.Limits.MaxStreamsPerCircuit,
		done:       make(chan struct{}),
		streams:    make(map[uint16]*Stream),
		now:        time.Now,
		// A receiver accepts what the largest window allows, whatever
		// its own FixedWindows says, so that nodes may differ in it.
		recvWin: circMaxWindow,
		winCh:   make(chan struct{}),
	}
	if !e.cfg.Limits.FixedWindows {
		ep.grow = true
		// An honest circuit's whole window may sit in one queue if the
		// next link stalls; keep it clear of this node's own
		// MaxCircuitQueue, with room for control cells.
		ep.cc = newVegas(circWindow, circMinWindow, min(circMaxWindow, e.cfg.Limits.MaxCircuitQueue-circQueueSlack))
	}
	return ep
}

// cwndLocked is the circuit's congestion window in DATA cells.
func (ep *endpoint) cwndLocked() int {
	if ep.cc == nil {
		return circWindow
	}
	return ep.cc.cwnd
}

// takeLocked counts one DATA cell sent on the circuit and stamps every
// circIncrement-th one, whose SENDME gives an RTT sample.
func (ep *endpoint) takeLocked() {
	ep.inflight++
	ep.sentN++
	if ep.sentN == circIncrement {
		ep.sentN = 0
		ep.stamps = append(ep.stamps, ep.now())
	}
}

// getChunk returns a buffer for one received DATA cell, charged to mem;
// nil if the budget has no room.
func (ep *endpoint) getChunk() *dataBuf {
	if ep.mem != nil && !ep.mem.reserve(chunkCost, useData) {
		return nil
	}
	return ep.e.getBuf()
}

// putChunk recycles a buffer from getChunk.
func (ep *endpoint) putChunk(b *dataBuf) {
	ep.e.putBuf(b)
	if ep.mem != nil {
		ep.mem.release(chunkCost)
	}
}

// signalLocked wakes every writer waiting for window.
func (ep *endpoint) signalLocked() {
	close(ep.winCh)
	ep.winCh = make(chan struct{})
}

// closedErr returns the circuit's close error, or nil while it is open.
func (ep *endpoint) closedErr() error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.err
}

// shutdown ends every stream with err and fails pending requests. Safe to
// call more than once; the first err wins.
func (ep *endpoint) shutdown(err error) {
	ep.mu.Lock()
	if ep.err != nil {
		ep.mu.Unlock()
		return
	}
	ep.err = err
	close(ep.done)
	streams := ep.streams
	ep.streams = map[uint16]*Stream{}
	ep.e.nStreams.Add(-int64(len(streams)))
	for _, s := range streams {
		if s.wErr == nil {
			s.wErr = err
		}
	}
	ep.signalLocked()
	ep.mu.Unlock()
	for _, s := range streams {
		s.remoteEnd(err)
	}
}

// addLocked registers s, enforcing MaxStreamsPerCircuit.
func (ep *endpoint) addLocked(s *Stream) error {
	if ep.err != nil {
		return ep.err
	}
	if len(ep.streams)+len(ep.pending)+ep.busy >= ep.maxStreams {
		return fmt.Errorf("%w: %d streams on circuit", ErrResourceLimit, ep.maxStreams)
	}
	if _, ok := ep.streams[s.id]; ok {
		return fmt.Errorf("%w: stream %d in use", ErrProtocol, s.id)
	}
	ep.streams[s.id] = s
	ep.e.nStreams.Add(1)
	return nil
}

// claimLocked registers s at the last hop and takes one of the circuit's
// MaxStreamsPerCircuit slots for it. The slot outlives the table entry: an
// END removes the entry at once, but the stream's owner gives the slot back
// (releaseSlot) only once its Begin hook has returned and its destination
// is closed, so dials in flight count against the cap.
func (ep *endpoint) claimLocked(s *Stream) error {
	if ep.err != nil {
		return ep.err
	}
	if _, ok := ep.streams[s.id]; ok {
		return fmt.Errorf("%w: stream %d in use", ErrProtocol, s.id)
	}
	if ep.busy >= ep.maxStreams {
		return fmt.Errorf("%w: %d streams on circuit", ErrResourceLimit, ep.maxStreams)
	}
	ep.busy++
	ep.streams[s.id] = s
	ep.e.nStreams.Add(1)
	return nil
}

// releaseSlot gives back a slot taken by claimLocked or by a RESOLVE.
func (ep *endpoint) releaseSlot() {
	ep.mu.Lock()
	ep.busy--
	ep.mu.Unlock()
}

// removeLocked drops s from the table if it is still there.
func (ep *endpoint) removeLocked(s *Stream) {
	if ep.streams[s.id] == s {
		delete(ep.streams, s.id)
		ep.e.nStreams.Add(-1)
		// It grants no more credit; what it holds comes back when its
		// buffers are freed (Stream.discardLocked).
		s.removed.Store(true)
	}
}

// allocIDLocked picks a free non-zero stream id (client side).
func (ep *endpoint) allocIDLocked() (uint16, error) {
	for range 1 << 16 {
		ep.nextID++
		if ep.nextID == 0 {
			ep.nextID = 1
		}
		id := ep.nextID
		if _, ok := ep.streams[id]; ok {
			continue
		}
		if _, ok := ep.pending[id]; ok {
			continue
		}
		return id, nil
	}
	return 0, fmt.Errorf("%w: no free stream id", ErrResourceLimit)
}

// onData handles a DATA cell (§5.2). The error is a protocol violation
// that must destroy the circuit.
func (ep *endpoint) onData(id uint16, data []byte) error {
	ep.mu.Lock()
	ep.recvWin--
	if ep.recvWin < 0 {
		ep.mu.Unlock()
		return fmt.Errorf("%w: circuit window exceeded", ErrProtocol)
	}
	ep.recvN++
	sendme := ep.recvN >= circIncrement
	if sendme {
		ep.recvN -= circIncrement
		ep.recvWin += circIncrement
	}
	s := ep.streams[id]
	ep.mu.Unlock()
	if sendme {
		if err := ep.send(cell.RelaySendme, 0, nil); err != nil {
			return err
		}
	}
	if s == nil {
		// Data in flight for a stream we closed: dropped.
		return nil
	}
	if err := s.push(data); !errors.Is(err, errNoMemory) {
		return err
	}
	ep.abort(s, cell.EndResourceLimit)
	return nil
}

// abort ends s from this end with END reason r: the far end is told, reads
// here return the reason's error, buffered DATA is freed and, at the last
// hop, the destination is closed.
func (ep *endpoint) abort(s *Stream, r cell.EndReason) {
	err := &endError{reason: r}
	ep.mu.Lock()
	if ep.streams[s.id] != s {
		ep.mu.Unlock()
		return
	}
	ep.removeLocked(s)
	if s.wErr == nil {
		s.wErr = err
	}
	dst, open := s.dst, ep.err == nil
	ep.signalLocked()
	ep.mu.Unlock()
	if open {
		b, _ := (&cell.End{Reason: r}).AppendBinary(nil)
		_ = ep.send(cell.RelayEnd, s.id, b) // fails only if the circuit is dying
	}
	s.remoteEnd(err)
	s.mu.Lock()
	s.discardLocked()
	s.mu.Unlock()
	if dst != nil {
		_ = dst.Close()
	}
}

// onSendme handles a SENDME (§5.2): stream 0 is the circuit window.
func (ep *endpoint) onSendme(id uint16) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if id == 0 {
		// A SENDME acknowledges the circIncrement-th cell after the one
		// the previous SENDME did; one with no such cell sent is a lie.
		if ep.inflight < circIncrement || len(ep.stamps) == 0 {
			return fmt.Errorf("%w: circuit SENDME above window", ErrProtocol)
		}
		ep.inflight -= circIncrement
		sent := ep.stamps[0]
		ep.stamps = ep.stamps[1:]
		if ep.cc != nil {
			ep.cc.onSendme(ep.now().Sub(sent))
		}
		ep.signalLocked()
		return nil
	}
	s := ep.streams[id]
	if s == nil {
		return nil
	}
	if s.sendWin+streamIncrement > streamMaxWindow {
		return fmt.Errorf("%w: stream SENDME above window", ErrProtocol)
	}
	s.sendWin += streamIncrement
	ep.signalLocked()
	return nil
}

// onEnd handles END for stream id: a pending request fails, an open stream
// reads to EOF (or the reason's error) and stops writing, and at the last
// hop its destination is closed (endDestination).
func (ep *endpoint) onEnd(id uint16, end cell.End) {
	r := end.Reason
	ep.mu.Lock()
	if ch, ok := ep.pending[id]; ok {
		delete(ep.pending, id)
		ch <- reply{cmd: cell.RelayEnd, end: end}
	}
	s := ep.streams[id]
	var err error = &endError{reason: r, code: end.SocksCode}
	if r == cell.EndDone {
		err = errStreamEnded
	}
	var dst net.Conn
	if s != nil {
		ep.removeLocked(s)
		if s.wErr == nil {
			s.wErr = err
		}
		dst = s.dst
		ep.signalLocked()
	}
	ep.mu.Unlock()
	if s == nil {
		return
	}
	if r == cell.EndDone {
		s.remoteEnd(nil)
	} else {
		s.remoteEnd(err)
	}
	if dst != nil {
		endDestination(s, dst, r, ep.e.cfg.Limits.EndLinger)
	}
}

// onReply delivers CONNECTED or RESOLVED to a pending request. An answer
// for a request we gave up on (Dial or Resolve ended first and sent END;
// the answer crossed it) is dropped, as DATA for a closed stream is
// (PROTOCOL.md §5.2).
func (ep *endpoint) onReply(id uint16, r reply) error {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	ch, ok := ep.pending[id]
	if !ok {
		return nil
	}
	delete(ep.pending, id)
	ch <- r
	return nil
}
