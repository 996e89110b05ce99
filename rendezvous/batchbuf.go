package rendezvous

import (
	"errors"
	"io"
	"os"
	"sync"
	"time"
)

// The write side of a rendezvous session (secureConn.Write and the copy
// into it, readFrom) takes its batch buffers while bytes flow and gives
// them back when the session goes quiet, so that an idle session (the
// common case for bitcoind and lnd peers) holds a few KiB instead of the
// 64 KiB target read buffer and the write batches a busy one uses
// (TestRendezvousSessionMemory, BenchmarkRendezvousSessionMemory).

// batchCap is the capacity of a pooled write batch: a full batch's
// ciphertext is at most maxWriteBatch (batchFor), and so is a shorter
// chunk's, which is cut into no more frames than a full one.
const batchCap = maxWriteBatch

// batchPool holds *[]byte of capacity batchCap for secureConn.Write;
// readPool *[]byte of length maxWriteBatch for readFrom. Pools, not
// state: any buffer is as good as another.
var (
	batchPool = sync.Pool{New: func() any { b := make([]byte, 0, batchCap); return &b }}
	readPool  = sync.Pool{New: func() any { b := make([]byte, maxWriteBatch); return &b }}
)

func getBatch() *[]byte { return batchPool.Get().(*[]byte) }

// putBatch gives back a batch from getBatch; one that grew past batchCap
// (it cannot, by batchFor's sizing, but a bound is cheap) is dropped.
func putBatch(b *[]byte) {
	if cap(*b) == batchCap {
		*b = (*b)[:0]
		batchPool.Put(b)
	}
}

// quietRead is what readFrom reads into while its source is quiet;
// idleRelease how long it waits on the source holding a batch-sized read
// buffer before it gives the buffer back (when it can: see readFrom).
const (
	quietRead   = 2 << 10
	idleRelease = time.Second
)

// readDeadliner is a source whose reads can be given a deadline.
type readDeadliner interface {
	SetReadDeadline(time.Time) error
}

// readFrom copies r into s until r ends (io.EOF, a clean end) or a read
// or write fails. While r is quiet it reads into a quietRead buffer, so
// an interactive message goes out at once in one frame and a waiting
// copy holds only that; a read that fills it means bytes are flowing,
// and reads then take up to a full batch (s.batchPlain, never more, so a
// read is never cut into a full batch and a short one) into a buffer
// from readPool. With dl (r's owner lets the copy use r's read
// deadline: join does for its target) the buffer goes back after r sent
// nothing for idleRelease, and the deadline is cleared on return;
// without it the copy keeps the buffer once it has one.
func (s *secureConn) readFrom(r io.Reader, dl readDeadliner) (int64, error) {
	quiet := make([]byte, quietRead)
	var big *[]byte
	defer func() {
		if big != nil {
			readPool.Put(big)
		}
		if dl != nil {
			dl.SetReadDeadline(time.Time{})
		}
	}()
	var total int64
	for {
		buf := quiet
		if big != nil {
			buf = (*big)[:min(s.batchPlain, len(*big))]
			if dl != nil && dl.SetReadDeadline(time.Now().Add(idleRelease)) != nil {
				dl = nil // r takes no deadlines after all: keep the buffer
			}
		}
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		switch {
		case err == nil:
		case big != nil && dl != nil && errors.Is(err, os.ErrDeadlineExceeded):
			// Quiet for idleRelease: give the buffer back and wait
			// without a deadline.
			readPool.Put(big)
			big = nil
			if derr := dl.SetReadDeadline(time.Time{}); derr != nil {
				return total, derr
			}
			continue
		case errors.Is(err, io.EOF):
			return total, nil
		default:
			return total, err
		}
		if big == nil && n == len(quiet) {
			big = readPool.Get().(*[]byte)
		}
	}
}
