package circuit

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// resolvedTTL is the TTL, in seconds, sent in RESOLVED.
const resolvedTTL = 60

// exitSide is the stream end of a circuit at its last hop: BEGIN opens a
// destination through Config.Begin and two engine goroutines pump bytes
// between it and the Stream (PROTOCOL.md §5).
type exitSide struct {
	h      *hop
	ep     *endpoint
	logged atomic.Bool // refused has logged for this circuit
}

// exitSide returns the hop's stream end, creating it on first use.
func (h *hop) exitSide() *exitSide {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exit == nil {
		ep := newEndpoint(h.e, cell.MaxData(h.depth), h.sendBack)
		ep.mem = &h.e.mem
		h.exit = &exitSide{h: h, ep: ep}
	}
	return h.exit
}

// handle runs on the previous link's reader. Errors are protocol
// violations that destroy the circuit.
func (x *exitSide) handle(m cell.Relay) error {
	switch m.Cmd {
	case cell.RelayData:
		return x.ep.onData(m.StreamID, m.Data)
	case cell.RelaySendme:
		return x.ep.onSendme(m.StreamID)
	case cell.RelayEnd:
		var end cell.End
		if err := end.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		x.ep.onEnd(m.StreamID, end)
		return nil
	case cell.RelayBegin:
		var b cell.Begin
		if err := b.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return x.begin(m.StreamID, b)
	case cell.RelayResolve:
		var r cell.Resolve
		if err := r.UnmarshalBinary(m.Data); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		return x.resolve(m.StreamID, r.Host)
	}
	return fmt.Errorf("%w: %v at the last hop", ErrProtocol, m.Cmd)
}

// sendEnd answers stream id with END reason r.
func (x *exitSide) sendEnd(id uint16, r cell.EndReason) error {
	return x.sendEndMsg(id, cell.End{Reason: r})
}

// sendEndMsg answers stream id with END m.
func (x *exitSide) sendEndMsg(id uint16, m cell.End) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return x.h.sendBack(cell.RelayEnd, id, b)
}

func (x *exitSide) begin(id uint16, b cell.Begin) error {
	e := x.h.e
	s := newStream(x.ep, id)
	s.local = StreamAddr{Stream: id}
	s.remote = StreamAddr{Stream: id}
	x.ep.mu.Lock()
	err := x.ep.claimLocked(s)
	x.ep.mu.Unlock()
	if err != nil {
		if errorsIsResource(err) {
			x.refused("stream cap", err)
			return x.sendEnd(id, cell.EndResourceLimit)
		}
		return err
	}
	if e.cfg.Begin == nil {
		x.dropStream(s)
		return x.sendEnd(id, cell.EndServiceNotOffered)
	}
	if !x.takeBegin() {
		x.dropStream(s)
		return x.sendEnd(id, cell.EndResourceLimit)
	}
	if !e.mem.reserve(streamCost, useNew) {
		e.begins.Add(-1)
		x.dropStream(s)
		return x.sendEnd(id, cell.EndResourceLimit)
	}
	req := BeginRequest{Service: b.Service, Target: b.Target, Cookie: x.h.cookie, Peer: x.h.prev.peer}
	if !e.goTracked(func() {
		defer e.mem.release(streamCost)
		x.connect(s, req)
	}) {
		e.begins.Add(-1)
		e.mem.release(streamCost)
		x.dropStream(s)
		return fmt.Errorf("engine: %w", ErrClosed)
	}
	return nil
}

// takeBegin takes one of the node's MaxPendingBegins; false means none is
// free. connect and resolve give it back when their hook returns.
func (x *exitSide) takeBegin() bool {
	e := x.h.e
	if e.begins.Add(1) > int64(e.cfg.Limits.MaxPendingBegins) {
		e.begins.Add(-1)
		x.refused("pending begins", ErrResourceLimit)
		return false
	}
	return true
}

// refused logs, once per circuit, that a per-circuit or node-wide cap
// refused a BEGIN or RESOLVE (the memory budget logs for itself).
func (x *exitSide) refused(what string, err error) {
	if x.logged.CompareAndSwap(false, true) {
		x.h.e.log.Debug("stream refused", "cap", what, "peer", x.h.prev.peer, "err", err)
	}
}

// dropStream forgets s without sending END and gives back its slot; only
// for a stream whose connect never ran.
func (x *exitSide) dropStream(s *Stream) {
	x.ep.mu.Lock()
	if s.wErr == nil {
		s.wErr = errStreamEnded
	}
	x.ep.removeLocked(s)
	x.ep.busy--
	x.ep.mu.Unlock()
	s.closeOnce.Do(func() {})
}

// connect runs Config.Begin, answers CONNECTED or END, and pumps bytes. It
// owns s's slot and the destination conn: when it returns the hook has
// returned, the conn is closed, s's buffers are freed and the slot is
// given back.
func (x *exitSide) connect(s *Stream, req BeginRequest) {
	e := x.h.e
	defer x.ep.releaseSlot()
	ctx, cancel := context.WithTimeout(x.h.context(), e.cfg.Limits.BeginTimeout)
	conn, err := e.cfg.Begin(ctx, req)
	cancel()
	e.begins.Add(-1)
	if err != nil || conn == nil {
		r := EndFor(err)
		if err == nil {
			r = cell.End{Reason: cell.EndServiceNotOffered}
		} else if r.Reason == cell.EndDone {
			r.Reason = cell.EndMisc
		}
		x.ep.mu.Lock()
		gone := s.wErr != nil // the client ended it, or the circuit died
		if !gone {
			s.wErr = errStreamEnded
		}
		x.ep.removeLocked(s)
		x.ep.mu.Unlock()
		_ = s.Close() // frees DATA sent ahead of the answer; sends no END
		if !gone {
			_ = x.sendEndMsg(s.id, r)
		}
		return
	}
	var addr netip.Addr
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	b, err := (&cell.Connected{Addr: addr}).AppendBinary(nil)
	if err == nil {
		x.ep.mu.Lock()
		if s.wErr != nil {
			// END (or the circuit's end) came while the hook ran.
			err = errStreamEnded
		} else {
			s.dst = conn
		}
		x.ep.mu.Unlock()
	}
	if err == nil {
		err = x.h.sendBack(cell.RelayConnected, s.id, b)
	}
	if err != nil {
		_ = conn.Close()
		_ = s.Close()
		return
	}
	x.pump(s, conn)
}

// pump copies bytes both ways between s and conn until both directions
// have stopped, then closes both. Toward the destination it stops at END
// (after writing what was buffered, within EndLinger for END done: see
// endDestination), at the circuit's end or a conn error; from the
// destination it stops at EOF or an error, which ends the stream (END
// done), or when the stream has ended. Each direction uses one cell
// buffer; the pair reports into a channel buffered to its count.
func (x *exitSide) pump(s *Stream, conn net.Conn) {
	e := x.h.e
	// If the circuit dies while a pump is stuck in conn (a destination
	// that neither reads nor writes), closing conn frees it.
	stop := context.AfterFunc(x.h.context(), func() { _ = conn.Close() })
	defer stop()
	up := make(chan struct{}, 1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		buf := e.getBuf()
		for {
			n, err := s.Read(buf[:])
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		e.putBuf(buf)
		// Stops the other direction too: conn.Read fails, and a Write
		// waiting for window sees the stream closed.
		_ = conn.Close()
		_ = s.Close()
		up <- struct{}{}
	}()
	buf := e.getBuf()
	for {
		n, err := conn.Read(buf[:x.ep.maxData])
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				// The stream has ended: the other direction may still be
				// writing what END left buffered, and closes conn.
				break
			}
		}
		if err != nil {
			// The destination is done (no half-close, §5.2): END done.
			_ = s.Close()
			_ = conn.Close()
			break
		}
	}
	e.putBuf(buf)
	<-up
}

// endDestination applies an END that reached the last hop to an open
// destination: reason done lets the pump write what the stream had
// buffered until EndLinger from now, then it closes dst; any other reason,
// or a dst without write deadlines, closes dst and frees the buffers at
// once. s has left the stream table.
func endDestination(s *Stream, dst net.Conn, r cell.EndReason, linger time.Duration) {
	if r == cell.EndDone && dst.SetWriteDeadline(time.Now().Add(linger)) == nil {
		return
	}
	_ = dst.Close()
	_ = s.Close() // sends no END: the far end sent one
}

func (x *exitSide) resolve(id uint16, host string) error {
	e := x.h.e
	x.ep.mu.Lock()
	if x.ep.busy >= x.ep.maxStreams {
		x.ep.mu.Unlock()
		x.refused("stream cap", ErrResourceLimit)
		return x.sendEnd(id, cell.EndResourceLimit)
	}
	x.ep.busy++
	x.ep.mu.Unlock()
	if e.cfg.Resolve == nil {
		x.ep.releaseSlot()
		return x.sendEnd(id, cell.EndResolveFailed)
	}
	if !x.takeBegin() {
		x.ep.releaseSlot()
		return x.sendEnd(id, cell.EndResourceLimit)
	}
	ok := e.goTracked(func() {
		defer x.ep.releaseSlot()
		ctx, cancel := context.WithTimeout(x.h.context(), e.cfg.Limits.BeginTimeout)
		a, err := e.cfg.Resolve(ctx, host)
		cancel()
		e.begins.Add(-1)
		if err == nil && (!a.IsValid() || a.Zone() != "") {
			err = ErrResolveFailed
		}
		if err != nil {
			r := EndReasonFor(err)
			if r == cell.EndDone || r == cell.EndMisc {
				r = cell.EndResolveFailed
			}
			_ = x.sendEnd(id, r)
			return
		}
		b, err := (&cell.Resolved{Addr: a, TTL: resolvedTTL}).AppendBinary(nil)
		if err == nil {
			_ = x.h.sendBack(cell.RelayResolved, id, b)
		}
	})
	if !ok {
		e.begins.Add(-1)
		x.ep.releaseSlot()
		return fmt.Errorf("engine: %w", ErrClosed)
	}
	return nil
}
