package rendezvous

import (
	"errors"
	"io"
	"sync"
)

// The read side of a secureConn holds a frame buffer only while a frame's
// plaintext is pending, and io.Copy from it needs no copy buffer
// (WriteTo), so a session waiting for its next frame holds neither the
// 16 KiB frame nor the 32 KiB of io.Copy (TestSecureConnIdleReaderHoldsNoBuffer).

// frameCap is the largest frame an honest peer sends (maxFramePlain and
// its tag); a longer one (up to 65,535 bytes) gets a buffer of its own.
const frameCap = maxFramePlain + 16

// framePool holds *[]byte of length frameCap. A pool, not state: any
// buffer is as good as another.
var framePool = sync.Pool{New: func() any { b := make([]byte, frameCap); return &b }}

// getFrame returns a buffer of at least n bytes for one frame.
func getFrame(n int) *[]byte {
	if n > frameCap {
		b := make([]byte, n)
		return &b
	}
	return framePool.Get().(*[]byte)
}

// putFrame gives back a buffer from getFrame (an oversized one is
// dropped).
func putFrame(b *[]byte) {
	if len(*b) == frameCap {
		framePool.Put(b)
	}
}

// WriteTo writes the decrypted stream to w frame by frame until it ends
// (io.EOF is a clean end), a frame does not decrypt or w fails. io.Copy(w,
// s) uses it, so the copy holds no buffer of its own while it waits for
// the next frame. Like Read, it holds rmu while it writes.
func (s *secureConn) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		s.rmu.Lock()
		if len(s.pending) == 0 {
			if err := s.nextFrameLocked(); err != nil {
				s.rmu.Unlock()
				if errors.Is(err, io.EOF) {
					err = nil
				}
				return total, err
			}
		}
		n, err := w.Write(s.pending)
		total += int64(n)
		s.consumedLocked(n)
		s.rmu.Unlock()
		if err != nil {
			return total, err
		}
	}
}
