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
	rbuf    []byte

	wmu  sync.Mutex // guards send, wbuf
	send *noise.CipherState
	wbuf []byte
}

func newSecureConn(c net.Conn, send, recv *noise.CipherState) *secureConn {
	return &secureConn{c: c, send: send, recv: recv}
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
		var h [2]byte
		if _, err := io.ReadFull(s.c, h[:]); err != nil {
			return 0, err
		}
		n := int(binary.BigEndian.Uint16(h[:]))
		if n < 16 {
			return 0, errBadFrame
		}
		if cap(s.rbuf) < n {
			s.rbuf = make([]byte, n)
		}
		ct := s.rbuf[:n]
		if _, err := io.ReadFull(s.c, ct); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		pt, err := s.recv.Decrypt(ct[:0], nil, ct)
		if err != nil {
			s.c.Close()
			return 0, errBadFrame
		}
		s.pending = pt
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

// Write encrypts p in frames of at most maxFramePlain bytes.
func (s *secureConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	done := 0
	for len(p) > 0 {
		n := min(len(p), maxFramePlain)
		b := append(s.wbuf[:0], 0, 0)
		b, err := s.send.Encrypt(b, nil, p[:n])
		if err != nil {
			return done, fmt.Errorf("rendezvous: encrypt: %w", err)
		}
		binary.BigEndian.PutUint16(b, uint16(len(b)-2))
		s.wbuf = b
		if _, err := s.c.Write(b); err != nil {
			return done, err
		}
		done += n
		p = p[n:]
	}
	return done, nil
}

// CloseWrite half-closes when the underlying conn can.
func (s *secureConn) CloseWrite() error {
	if cw, ok := s.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.c.Close()
}
