package rendezvous

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// maxRVBuffer bounds the bytes one end of a rendezvous holds for its
// stream; past it the other end's Write waits, which stops reading that
// stream and so withholds its SENDMEs (backpressure, not memory). At
// 256 KiB a stalled end pinned 8 times the 32 KiB the engine's memory
// budget charges a stream, outside that budget
// (TestRendezvousSplicePinnedBytes); 128 KiB halves that. Smaller costs
// cells: the reading pump more often finds less than a cell queued and
// sends a part-filled one (BenchmarkE2EOnion onion-hopbytes/B: 7.65 at
// 256 KiB, 7.69 at 128 KiB, 7.77 at 64 KiB).
const maxRVBuffer = 128 << 10

// minRVBuffer is what one end may buffer while all splices together hold
// ServerConfig.MaxSpliceBuffer or more: one queue chunk, so that a
// stalled end then pins at most a couple of chunks and a flowing one
// still moves.
const minRVBuffer = rvChunkSize

// rvLimit is what one end may buffer now.
func (s *Server) rvLimit() int {
	if s.spliced.Load() >= s.cfg.MaxSpliceBuffer {
		return minRVBuffer
	}
	return maxRVBuffer
}

// maxWaitingPerCircuit caps the client cookies one circuit keeps waiting
// (a client registers one per rendezvous circuit), so that filling
// ServerConfig.MaxWaiting takes that many paid circuits, not a few
// circuits of 64 streams each.
const maxWaitingPerCircuit = 4

// errNoDeadline: rvConn has write deadlines only (what the engine uses to
// linger after END: the bytes the stream still holds are written to the
// other end until the deadline).
var errNoDeadline = errors.New("rendezvous: no read deadlines on a rendezvous conn")

// errWriteTimeout is a Write that waited for room past the write deadline.
var errWriteTimeout = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "rendezvous: write deadline exceeded" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// rvConn is the conn the circuit engine pumps one rendezvous stream into
// (returned by Server.Begin). Until it is joined its Writes carry the
// join request (role | cookie) and its Reads the status byte; once
// joined, a Write lands in the other end's read buffer, so the two
// engines' pumps splice the streams without a goroutine of ours and
// without any copy beyond the buffer. It sees only end-to-end ciphertext.
type rvConn struct {
	s    *Server
	prev peer.ID
	circ [cell.CookieLen]byte // the circuit's session cookie at this hop

	mu      sync.Mutex // guards everything below
	cond    *sync.Cond // on mu: rbuf grew or shrank, or a close
	rbuf    rvQueue    // bytes for this end's stream
	eof     bool       // nothing more will be added to rbuf
	closed  bool       // Close was called
	hdr     []byte     // join request collected so far
	role    byte       // rvClient or rvService once the request is read
	cookie  [cookieLen]byte
	other   *rvConn     // set once joined
	timer   *time.Timer // header, then rendezvous wait (client)
	waiting bool        // a client registered in Server.waiting
	wdl     time.Time   // write deadline
	// readers and writers count goroutines waiting in Read and push, so
	// that a wake-up is sent only when someone waits (and a writer only
	// once half the buffer is free): one cond signal per cell would cost a
	// scheduler round trip per cell.
	readers, writers int
}

var _ net.Conn = (*rvConn)(nil)

func (s *Server) newRVConn(req circuit.BeginRequest) *rvConn {
	c := &rvConn{s: s, prev: req.Peer, circ: req.Cookie}
	c.rbuf.pool = &s.rvChunks
	c.cond = sync.NewCond(&c.mu)
	c.timer = time.AfterFunc(handshakeTimeout, func() { c.giveUp() })
	return c
}

// giveUp ends a conn that did not join in time.
func (c *rvConn) giveUp() {
	c.mu.Lock()
	joined := c.other != nil
	c.mu.Unlock()
	if !joined {
		c.Close()
	}
}

// push appends b to c's read buffer, waiting while it is full (until
// deadline dl, if set); it fails once c is closed.
func (c *rvConn) push(b []byte, dl time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.rbuf.n >= c.s.rvLimit() && !c.closed {
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return errWriteTimeout
			}
			t := time.AfterFunc(d, func() {
				c.mu.Lock()
				c.cond.Broadcast()
				c.mu.Unlock()
			})
			c.writers++
			c.cond.Wait()
			c.writers--
			t.Stop()
			continue
		}
		c.writers++
		c.cond.Wait()
		c.writers--
	}
	if c.closed || c.eof {
		return net.ErrClosed
	}
	c.pushLocked(b)
	if c.readers > 0 {
		c.cond.Broadcast()
	}
	return nil
}

// pushLocked appends b to c's queue and counts the chunk memory it took
// in Server.spliced; c.mu held.
func (c *rvConn) pushLocked(b []byte) {
	h := c.rbuf.held()
	c.rbuf.push(b)
	c.s.spliced.Add(c.rbuf.held() - h)
}

// answer queues a status byte; end marks the conn done after it. A
// closed conn drops it: nobody reads it, and Close has settled spliced.
func (c *rvConn) answer(st byte, end bool) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.pushLocked([]byte{st})
	c.eof = c.eof || end
	c.cond.Broadcast()
	c.mu.Unlock()
}

// Read returns what the other end wrote (or a status byte), and io.EOF
// once that end closed and everything was read.
func (c *rvConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.rbuf.n == 0 && !c.eof && !c.closed {
		c.readers++
		c.cond.Wait()
		c.readers--
	}
	if c.rbuf.n == 0 {
		if c.closed {
			return 0, net.ErrClosed
		}
		return 0, io.EOF
	}
	h := c.rbuf.held()
	n := c.rbuf.read(p)
	c.s.spliced.Add(c.rbuf.held() - h)
	if c.writers > 0 && c.rbuf.n <= c.s.rvLimit()/2 {
		c.cond.Broadcast()
	}
	return n, nil
}

// Write carries the join request, then (joined) bytes for the other end.
func (c *rvConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, net.ErrClosed
	}
	other, dl := c.other, c.wdl
	if other == nil {
		n := min(len(p), 1+cookieLen-len(c.hdr))
		c.hdr = append(c.hdr, p[:n]...)
		rest := p[n:]
		if len(c.hdr) < 1+cookieLen {
			c.mu.Unlock()
			return len(p), nil
		}
		if c.role != 0 { // a client sent more before the service came
			c.mu.Unlock()
			c.Close()
			return 0, net.ErrClosed
		}
		c.role = c.hdr[0]
		copy(c.cookie[:], c.hdr[1:])
		c.mu.Unlock()
		other = c.join()
		if other == nil || len(rest) == 0 {
			return len(p), nil
		}
		if err := c.forward(other, rest, dl); err != nil {
			return n, err
		}
		return len(p), nil
	}
	c.mu.Unlock()
	if err := c.forward(other, p, dl); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *rvConn) forward(other *rvConn, p []byte, dl time.Time) error {
	if obs := c.s.cfg.Observe; obs != nil {
		obs(TargetRendezvous, "", append([]byte(nil), p...))
	}
	return other.push(p, dl)
}

// join acts on the join request: a client registers its cookie, a service
// is paired with the client that registered it. It returns the other end
// when c is a joined service.
func (c *rvConn) join() *rvConn {
	s := c.s
	now := s.cfg.Now()
	switch c.role {
	case rvClient:
		var key [32]byte
		copy(key[:], c.cookie[:])
		s.mu.Lock()
		_, dup := s.waitingRV[c.cookie]
		full := len(s.waitingRV) >= s.cfg.MaxWaiting || s.waitingPer[c.circ] >= maxWaitingPerCircuit
		ok := !dup && !full && !s.cookies.seen(key, now)
		if ok {
			s.waitingRV[c.cookie] = c
			s.waitingPer[c.circ]++
		}
		s.mu.Unlock()
		if !ok {
			st := statusReplay
			if full && !dup {
				st = statusRateLimited
			}
			c.answer(st, true)
			return nil
		}
		c.mu.Lock()
		c.waiting = true
		c.timer.Reset(s.cfg.RendezvousWait)
		c.mu.Unlock()
		c.answer(statusOK, false)
		return nil
	case rvService:
		s.mu.Lock()
		cl := s.waitingRV[c.cookie]
		if cl != nil {
			s.unwaitLocked(cl)
		}
		s.mu.Unlock()
		if cl == nil {
			c.answer(statusNotFound, true)
			return nil
		}
		cl.mu.Lock()
		alive := !cl.closed
		if alive {
			cl.other, cl.waiting = c, false
			cl.timer.Stop()
		}
		cl.mu.Unlock()
		if !alive {
			c.answer(statusNotFound, true)
			return nil
		}
		c.mu.Lock()
		c.other = cl
		c.timer.Stop()
		c.mu.Unlock()
		c.answer(statusOK, false)
		return cl
	default:
		c.answer(statusRefused, true)
		return nil
	}
}

// unwaitLocked removes the waiting client c; s.mu held.
func (s *Server) unwaitLocked(c *rvConn) {
	delete(s.waitingRV, c.cookie)
	if s.waitingPer[c.circ]--; s.waitingPer[c.circ] <= 0 {
		delete(s.waitingPer, c.circ)
	}
}

// Close ends this side; the other end reads what is buffered, then EOF.
func (c *rvConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.s.spliced.Add(-c.rbuf.held())
	c.rbuf.reset() // a closed conn reads nothing more
	c.timer.Stop()
	other, waiting, cookie := c.other, c.waiting, c.cookie
	c.cond.Broadcast()
	c.mu.Unlock()
	if waiting {
		c.s.mu.Lock()
		if c.s.waitingRV[cookie] == c {
			c.s.unwaitLocked(c)
		}
		c.s.mu.Unlock()
	}
	if other != nil {
		other.mu.Lock()
		other.eof = true
		other.cond.Broadcast()
		other.mu.Unlock()
	}
	return nil
}

func (c *rvConn) LocalAddr() net.Addr             { return rvAddr{} }
func (c *rvConn) RemoteAddr() net.Addr            { return rvAddr{} }
func (c *rvConn) SetDeadline(time.Time) error     { return errNoDeadline }
func (c *rvConn) SetReadDeadline(time.Time) error { return errNoDeadline }
func (c *rvConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.wdl = t
	c.mu.Unlock()
	return nil
}

type rvAddr struct{}

func (rvAddr) Network() string { return "co-infuse-rendezvous" }
func (rvAddr) String() string  { return "rendezvous" }
