package circuit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// errStreamEnded is returned by Write after the far end sent END done.
var errStreamEnded = fmt.Errorf("%w: stream ended by peer", ErrClosed)

// errNoMemory is push's answer when Limits.MemoryBudget has no room for
// one more DATA cell; the endpoint ends the stream with END resource limit.
var errNoMemory = fmt.Errorf("%w: memory budget", ErrResourceLimit)

// Stream is one TCP-like stream over a circuit. It implements net.Conn.
// Reads return io.EOF after the far end finished cleanly, or an error
// wrapping an errors.go sentinel if it failed or the circuit died. Writes
// wait for flow-control window (PROTOCOL.md §5.2), so a slow far end slows
// only its own stream. Close sends END; it is safe to call twice.
type Stream struct {
	ep     *endpoint
	id     uint16
	local  net.Addr
	remote net.Addr

	wmu sync.Mutex // serialises Write calls

	// Guarded by ep.mu.
	sendWin int   // DATA cells we may still send on this stream
	wErr    error // non-nil once writes must fail
	// dst is the last hop's destination once dialed (nil before, and at
	// the client); guarded by ep.mu. exitSide.connect owns and closes it;
	// an END may close it first or bound its last writes (endDestination).
	dst net.Conn

	mu        sync.Mutex   // guards the receive side below
	chunks    []chunk      // received DATA not yet read (endpoint.getChunk)
	recvWin   int          // DATA cells the peer may still send
	recvMax   int          // the window we grant the peer: streamWindow, growing to streamMaxWindow
	delivered int          // cells fully read since our last stream SENDME
	granted   atomic.Int64 // cells of ep.extra this stream holds; changed under mu (growLocked, discardLocked)
	removed   atomic.Bool  // set by endpoint.removeLocked: grants no more credit
	rErr      error        // returned once chunks are drained
	rClosed   bool         // Close was called
	notify    chan struct{}

	closeOnce sync.Once
	rdl, wdl  deadline
}

var _ net.Conn = (*Stream)(nil)

// chunk is one received DATA cell's bytes, b[off:end] not yet read.
type chunk struct {
	b        *dataBuf
	off, end int
}

// dataBuf holds the bytes of one DATA cell; the engine recycles them.
type dataBuf [cell.MaxRelayData]byte

func newStream(ep *endpoint, id uint16) *Stream {
	s := &Stream{
		ep:      ep,
		id:      id,
		sendWin: streamWindow,
		recvWin: streamWindow,
		recvMax: streamWindow,
		notify:  make(chan struct{}, 1),
	}
	s.rdl.init()
	s.wdl.init()
	return s
}

func (s *Stream) wake() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// push appends one DATA cell's bytes; a peer that overruns the stream
// window breaks the protocol.
func (s *Stream) push(data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recvWin--
	if s.recvWin < 0 {
		return fmt.Errorf("%w: stream window exceeded", ErrProtocol)
	}
	if s.rClosed || s.rErr != nil {
		return nil
	}
	b := s.ep.getChunk()
	if b == nil {
		return errNoMemory
	}
	n := copy(b[:], data)
	s.chunks = append(s.chunks, chunk{b: b, end: n})
	s.wake()
	return nil
}

// remoteEnd makes reads end after the buffered data with err (nil = EOF).
func (s *Stream) remoteEnd(err error) {
	if err == nil {
		err = io.EOF
	}
	s.mu.Lock()
	if s.rErr == nil {
		s.rErr = err
	}
	s.mu.Unlock()
	s.wake()
}

// discardLocked frees the buffered DATA for good (the stream is closed
// or aborted) and gives its extra stream credit back to the circuit; s.mu
// must be held. The credit is returned here, not when the stream leaves
// the table: an ended stream may still buffer up to its grown window (the
// last hop writes it out for EndLinger), and that must keep counting
// against streamMaxExtra (PROTOCOL.md §5.2).
func (s *Stream) discardLocked() {
	for _, ch := range s.chunks {
		s.ep.putChunk(ch.b)
	}
	s.chunks = nil
	s.ep.extra.Add(-s.granted.Swap(0))
}

// Read reads stream data; see Stream.
func (s *Stream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		s.mu.Lock()
		if s.rClosed {
			s.mu.Unlock()
			return 0, net.ErrClosed
		}
		if len(s.chunks) > 0 {
			n, sendmes := 0, 0
			for n < len(p) && len(s.chunks) > 0 {
				ch := &s.chunks[0]
				k := copy(p[n:], ch.b[ch.off:ch.end])
				n += k
				ch.off += k
				if ch.off < ch.end {
					break
				}
				s.ep.putChunk(ch.b)
				*ch = chunk{}
				s.chunks = s.chunks[1:]
				s.delivered++
				if s.delivered >= streamIncrement {
					s.delivered -= streamIncrement
					s.recvWin += streamIncrement
					sendmes++
				}
			}
			if sendmes > 0 && s.growLocked() {
				sendmes++
			}
			s.mu.Unlock()
			for range sendmes {
				// A failed send means the circuit is dying; the next
				// Read reports it.
				_ = s.ep.send(cell.RelaySendme, s.id, nil)
			}
			return n, nil
		}
		if s.rErr != nil {
			err := s.rErr
			s.mu.Unlock()
			return 0, err
		}
		s.mu.Unlock()
		select {
		case <-s.notify:
		case <-s.rdl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

// growLocked decides, when a stream SENDME is due, whether to widen the
// stream's window by one more increment (an extra SENDME, §5.2): only
// while the reader keeps up (less than one increment of data waits
// unread, so the window, not the reader, limits the stream), up to
// streamMaxWindow, while the circuit's streams together hold at most
// streamMaxExtra of such credit, at the last hop while the memory budget
// is below half, and while the circuit's growth gate (SetGrowthGate), if
// any, agrees. s.mu must be held.
func (s *Stream) growLocked() bool {
	ep := s.ep
	if !ep.grow || s.removed.Load() || s.recvMax+streamIncrement > streamMaxWindow || len(s.chunks) >= streamIncrement {
		return false
	}
	if ep.mem != nil && ep.mem.used.Load()+int64(streamIncrement)*chunkCost > ep.mem.limit/2 {
		return false
	}
	if ep.extra.Add(streamIncrement) > streamMaxExtra {
		ep.extra.Add(-streamIncrement)
		return false
	}
	if g := ep.gate.Load(); g != nil && !(*g)(int64(streamWindow+ep.extra.Load())*cell.Size) {
		ep.extra.Add(-streamIncrement)
		return false
	}
	s.granted.Add(streamIncrement)
	s.recvMax += streamIncrement
	s.recvWin += streamIncrement
	return true
}

// acquire takes one cell of stream and circuit window, waiting for it.
func (s *Stream) acquire() error {
	ep := s.ep
	for {
		ep.mu.Lock()
		if s.wErr != nil {
			err := s.wErr
			ep.mu.Unlock()
			return err
		}
		if s.sendWin > 0 && ep.inflight < ep.cwndLocked() {
			s.sendWin--
			ep.takeLocked()
			ep.mu.Unlock()
			return nil
		}
		ch := ep.winCh
		ep.mu.Unlock()
		select {
		case <-ch:
		case <-s.wdl.wait():
			return os.ErrDeadlineExceeded
		case <-ep.done:
		}
	}
}

// Write sends p as DATA cells; see Stream.
func (s *Stream) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	n := 0
	for len(p) > 0 {
		if err := s.acquire(); err != nil {
			return n, err
		}
		k := min(len(p), s.ep.maxData)
		if err := s.ep.send(cell.RelayData, s.id, p[:k]); err != nil {
			if cerr := s.ep.closedErr(); cerr != nil {
				err = cerr
			}
			return n, fmt.Errorf("stream write: %w", err)
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Close ends the stream: it sends END (reason done) unless the far end
// already ended it, and discards unread data. Safe to call twice.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.rClosed = true
		s.discardLocked()
		s.mu.Unlock()
		s.wake()
		ep := s.ep
		ep.mu.Lock()
		sendEnd := s.wErr == nil && ep.err == nil
		if s.wErr == nil {
			s.wErr = net.ErrClosed
		}
		ep.removeLocked(s)
		ep.signalLocked()
		ep.mu.Unlock()
		if sendEnd {
			b, _ := (&cell.End{Reason: cell.EndDone}).AppendBinary(nil)
			_ = ep.send(cell.RelayEnd, s.id, b)
		}
	})
	return nil
}

// LocalAddr returns an address naming the circuit and stream.
func (s *Stream) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the destination address the last hop reported in
// CONNECTED (IP and the target's port), or a StreamAddr if it reported none.
func (s *Stream) RemoteAddr() net.Addr { return s.remote }

// SetDeadline sets both deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	s.rdl.set(t)
	s.wdl.set(t)
	return nil
}

// SetReadDeadline sets the read deadline; expired reads fail with
// os.ErrDeadlineExceeded.
func (s *Stream) SetReadDeadline(t time.Time) error { s.rdl.set(t); return nil }

// SetWriteDeadline sets the write deadline; writes waiting for window fail
// with os.ErrDeadlineExceeded.
func (s *Stream) SetWriteDeadline(t time.Time) error { s.wdl.set(t); return nil }

// StreamAddr is the net.Addr of a stream end that has no IP address.
type StreamAddr struct {
	Circuit uint64
	Stream  uint16
}

// Network returns "co-infuse".
func (a StreamAddr) Network() string { return "co-infuse" }

// String returns "circuit-<id hex>/<stream>".
func (a StreamAddr) String() string { return fmt.Sprintf("circuit-%x/%d", a.Circuit, a.Stream) }

// remoteAddrFor builds RemoteAddr from CONNECTED's address and the port of
// the BEGIN target; fallback when CONNECTED carried no usable address.
func remoteAddrFor(addr netip.Addr, port uint16, fallback net.Addr) net.Addr {
	if !addr.IsValid() || addr.Zone() != "" || port == 0 {
		return fallback
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, port))
}

// isClosedErr reports errors that mean "this end is gone".
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, ErrClosed) || errors.Is(err, io.EOF)
}
