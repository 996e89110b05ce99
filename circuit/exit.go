package circuit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// resolvedTTL is the TTL, in seconds, sent in RESOLVED.
const resolvedTTL = 60

// exitSide is the stream end of a circuit at its last hop: BEGIN opens a
// destination through Config.Begin and two engine goroutines pump bytes
// between it and the Stream (PROTOCOL.md §5).
type exitSide struct {
	h  *hop
	ep *endpoint
}

// exitSide returns the hop's stream end, creating it on first use.
func (h *hop) exitSide() *exitSide {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exit == nil {
		h.exit = &exitSide{h: h, ep: newEndpoint(h.e, cell.MaxData(h.depth), h.sendBack)}
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
		x.ep.onEnd(m.StreamID, end.Reason)
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
	b, err := (&cell.End{Reason: r}).AppendBinary(nil)
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
	err := x.ep.addLocked(s)
	x.ep.mu.Unlock()
	if err != nil {
		if errorsIsResource(err) {
			return x.sendEnd(id, cell.EndResourceLimit)
		}
		return err
	}
	if e.cfg.Begin == nil {
		x.dropStream(s)
		return x.sendEnd(id, cell.EndServiceNotOffered)
	}
	req := BeginRequest{Service: b.Service, Target: b.Target, Cookie: x.h.cookie, Peer: x.h.prev.peer}
	if !e.goTracked(func() { x.connect(s, req) }) {
		x.dropStream(s)
		return fmt.Errorf("engine: %w", ErrClosed)
	}
	return nil
}

// dropStream forgets s without sending END.
func (x *exitSide) dropStream(s *Stream) {
	x.ep.mu.Lock()
	if s.wErr == nil {
		s.wErr = errStreamEnded
	}
	x.ep.removeLocked(s)
	x.ep.mu.Unlock()
	s.closeOnce.Do(func() {})
}

// connect runs Config.Begin, answers CONNECTED or END, and pumps bytes.
func (x *exitSide) connect(s *Stream, req BeginRequest) {
	e := x.h.e
	ctx, cancel := context.WithTimeout(x.h.context(), e.cfg.Limits.BeginTimeout)
	conn, err := e.cfg.Begin(ctx, req)
	cancel()
	if err != nil || conn == nil {
		r := EndReasonFor(err)
		if err == nil {
			r = cell.EndServiceNotOffered
		} else if r == cell.EndDone {
			r = cell.EndMisc
		}
		x.dropStream(s)
		_ = x.sendEnd(s.id, r)
		return
	}
	var addr netip.Addr
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		addr = ta.AddrPort().Addr().Unmap()
	}
	b, err := (&cell.Connected{Addr: addr}).AppendBinary(nil)
	if err == nil {
		x.ep.mu.Lock()
		gone := s.wErr != nil
		x.ep.mu.Unlock()
		if gone {
			err = errStreamEnded
		} else {
			err = x.h.sendBack(cell.RelayConnected, s.id, b)
		}
	}
	if err != nil {
		_ = conn.Close()
		_ = s.Close()
		return
	}
	// If the circuit dies while a pump is stuck in conn (a destination
	// that neither reads nor writes), closing conn frees it.
	stop := context.AfterFunc(x.h.context(), func() { _ = conn.Close() })
	defer stop()
	// The pair reports into a channel buffered to its count; the second
	// one to finish is waited for here so both are owned.
	res := make(chan struct{}, 2)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_, _ = io.Copy(conn, s) // until END, circuit death or conn error
		_ = conn.Close()
		res <- struct{}{}
	}()
	_, _ = io.Copy(s, conn) // until the destination closes
	_ = s.Close()
	_ = conn.Close()
	<-res
}

func (x *exitSide) resolve(id uint16, host string) error {
	e := x.h.e
	x.ep.mu.Lock()
	if len(x.ep.streams)+x.ep.busy >= x.ep.maxStreams {
		x.ep.mu.Unlock()
		return x.sendEnd(id, cell.EndResourceLimit)
	}
	x.ep.busy++
	x.ep.mu.Unlock()
	done := func() {
		x.ep.mu.Lock()
		x.ep.busy--
		x.ep.mu.Unlock()
	}
	if e.cfg.Resolve == nil {
		done()
		return x.sendEnd(id, cell.EndResolveFailed)
	}
	ok := e.goTracked(func() {
		defer done()
		ctx, cancel := context.WithTimeout(x.h.context(), e.cfg.Limits.BeginTimeout)
		a, err := e.cfg.Resolve(ctx, host)
		cancel()
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
		done()
		return fmt.Errorf("engine: %w", ErrClosed)
	}
	return nil
}
