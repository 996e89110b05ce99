package rendezvous

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/flynn/noise"
)

// maxFramePlain is the most plaintext one end-to-end frame carries; a frame
// on the spliced stream is len(2) | ChaCha20-Poly1305 ciphertext.
const maxFramePlain = 16*1024 - 16

// errBadFrame: a frame that does not decrypt (the rendezvous node or a
// middle hop tampered with it, or a bug).
var errBadFrame = errors.New("rendezvous: end-to-end frame does not decrypt")

// secureConn is the end-to-end channel between client and service over the
// spliced rendezvous stream: every byte the rendezvous node relays is a
// Noise transport ciphertext. Read and Write may be called concurrently.
type secureConn struct {
	// c is the spliced stream. A field, not embedded: an embedded conn's
	// ReadFrom or WriteTo would be promoted and let io.Copy bypass the
	// encryption.
	c net.Conn

	rmu     sync.Mutex // guards recv, pending, rbuf
	recv    *noise.CipherState
	pending []byte
	rbuf    *[]byte // the frame pending is in, while pending is not empty (framepool.go)

	wmu  sync.Mutex // guards send
	send *noise.CipherState

	// batchPlain is the plaintext of one full batch, and batchFrames the
	// frames it is cut into: their ciphertext is exactly a whole number
	// of the stream's cells (see batchFor).
	batchPlain, batchFrames int
}

// newSecureConn wraps c; cellData is the DATA bytes one cell of c's
// circuit carries from this end (cell.MaxData of its depth), or 0 if
// unknown.
func newSecureConn(c net.Conn, send, recv *noise.CipherState, cellData int) *secureConn {
	s := &secureConn{c: c, send: send, recv: recv}
	s.batchPlain, s.batchFrames = batchFor(cellData)
	return s
}

// frameOverhead is what a frame adds to its plaintext: length and tag.
const frameOverhead = 2 + 16

// batchFor sizes a full write batch for a stream whose cells carry
// cellData bytes: as many whole cells as fit in maxWriteBatch (all of
// maxWriteBatch if cellData is 0), cut into the fewest frames of at most
// maxFramePlain. It returns the batch's plaintext and its frame count.
// The stream cuts each write into cells, so a batch of 4 frames of 16 KiB
// (65,608 bytes) took 17 cells of a 4-hop circuit (3,986 bytes each), the
// last one under half full: every hop of both circuits carried 3 % more
// cells than the bytes needed.
func batchFor(cellData int) (plain, frames int) {
	batch := maxWriteBatch
	if cellData > 0 && cellData < maxWriteBatch {
		batch = maxWriteBatch / cellData * cellData
	}
	frames = (batch + maxFramePlain + frameOverhead - 1) / (maxFramePlain + frameOverhead)
	return batch - frames*frameOverhead, frames
}

var _ net.Conn = (*secureConn)(nil)

func (s *secureConn) Close() error                       { return s.c.Close() }
func (s *secureConn) LocalAddr() net.Addr                { return s.c.LocalAddr() }
func (s *secureConn) RemoteAddr() net.Addr               { return s.c.RemoteAddr() }
func (s *secureConn) SetDeadline(t time.Time) error      { return s.c.SetDeadline(t) }
func (s *secureConn) SetReadDeadline(t time.Time) error  { return s.c.SetReadDeadline(t) }
func (s *secureConn) SetWriteDeadline(t time.Time) error { return s.c.SetWriteDeadline(t) }

// Read returns decrypted bytes; a frame that fails to decrypt ends the
// connection with errBadFrame.
func (s *secureConn) Read(p []byte) (int, error) {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if len(s.pending) == 0 {
		if err := s.nextFrameLocked(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.consumedLocked(n)
	return n, nil
}

// nextFrameLocked reads and decrypts the next frame into s.pending, in a
// buffer taken (getFrame) once the frame's length has arrived, so a
// session waiting for its next frame holds none. Called with rmu held and
// s.pending empty.
func (s *secureConn) nextFrameLocked() error {
	var h [2]byte
	if _, err := io.ReadFull(s.c, h[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n < 16 {
		return errBadFrame
	}
	s.rbuf = getFrame(n)
	ct := (*s.rbuf)[:n]
	if _, err := io.ReadFull(s.c, ct); err != nil {
		s.consumedLocked(0)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	pt, err := s.recv.Decrypt(ct[:0], nil, ct)
	if err != nil {
		s.consumedLocked(0)
		s.c.Close()
		return errBadFrame
	}
	s.pending = pt
	return nil
}

// consumedLocked drops n bytes of s.pending and gives the frame buffer
// back once nothing is pending. Called with rmu held.
func (s *secureConn) consumedLocked(n int) {
	s.pending = s.pending[n:]
	if len(s.pending) == 0 && s.rbuf != nil {
		s.pending = nil
		putFrame(s.rbuf)
		s.rbuf = nil
	}
}

// maxWriteBatch bounds the frames one Write hands the stream at once.
const maxWriteBatch = 64 << 10

// Write encrypts p in frames of at most maxFramePlain bytes and writes
// them to the stream together, a batch (batchFor) at a time: the stream
// cuts each write into cells, so one write per frame would end every
// frame with a part-filled cell (a 16 KiB frame is 4.1 cells of a 4-hop
// circuit, so 5 cells), a quarter more cells for every hop to carry than
// the bytes need; a full batch fills its cells exactly.
func (s *secureConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	// The batch buffer is this Write's only (batchbuf.go), so an idle
	// session holds none.
	bp := getBatch()
	defer putBatch(bp)
	done := 0
	for len(p) > 0 {
		chunk := p[:min(len(p), s.batchPlain)]
		// A full batch is cut into batchFrames frames of (nearly) equal
		// size, so its ciphertext is exactly the batch; a shorter one
		// into frames of maxFramePlain.
		size, extra := maxFramePlain, 0
		if len(chunk) == s.batchPlain {
			size, extra = s.batchPlain/s.batchFrames, s.batchPlain%s.batchFrames
		}
		b := (*bp)[:0]
		for rest := chunk; len(rest) > 0; {
			n := size
			if extra > 0 {
				n, extra = n+1, extra-1
			}
			n = min(n, len(rest))
			off := len(b)
			var err error
			b, err = s.send.Encrypt(append(b, 0, 0), nil, rest[:n])
			if err != nil {
				return done, fmt.Errorf("rendezvous: encrypt: %w", err)
			}
			binary.BigEndian.PutUint16(b[off:], uint16(len(b)-off-2))
			rest = rest[n:]
		}
		*bp = b
		if _, err := s.c.Write(b); err != nil {
			return done, err
		}
		done += len(chunk)
		p = p[len(chunk):]
	}
	return done, nil
}

// ReadFrom encrypts what r yields until EOF, a full batch at a time
// while bytes flow, so that a bulk copy into s (io.Copy, as the SOCKS
// front end does) fills whole cells; without it io.Copy would write
// 32 KiB at a time, a batch ending in a part-filled cell. See readFrom
// for the buffers it holds.
func (s *secureConn) ReadFrom(r io.Reader) (int64, error) {
	return s.readFrom(r, nil)
}

// CloseWrite half-closes when the underlying conn can.
func (s *secureConn) CloseWrite() error {
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.c.Close()
}
