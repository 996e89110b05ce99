package rendezvous

import "sync"

// rvChunkSize is the size of the pooled chunks an rvQueue holds its bytes
// in: a few cells' DATA, so a chunk is taken from the pool every few
// pushes, not every one.
const rvChunkSize = 16 << 10

// rvChunk is one pooled piece of an rvQueue: bytes [r, w) are unread.
type rvChunk struct {
	b    [rvChunkSize]byte
	r, w int
}

// rvQueue is the byte FIFO between the two ends of a rendezvous splice:
// pushed bytes are copied into pooled fixed-size chunks, read out in
// order, and each chunk goes back to the pool once read. Appending to and
// slicing off the front of one []byte (as before) reallocated and copied
// the whole unread buffer every few cells, once per cell and direction at
// every rendezvous point; a queue of chunks copies each byte in once and
// out once, and an idle splice holds no memory. Not safe for concurrent
// use; rvConn.mu guards it.
type rvQueue struct {
	pool   *sync.Pool // of *rvChunk; nil makes fresh chunks
	chunks []*rvChunk // oldest first
	n      int        // unread bytes in all chunks
}

func (q *rvQueue) get() *rvChunk {
	if q.pool != nil {
		if c, ok := q.pool.Get().(*rvChunk); ok {
			c.r, c.w = 0, 0
			return c
		}
	}
	return new(rvChunk)
}

func (q *rvQueue) put(c *rvChunk) {
	if q.pool != nil {
		q.pool.Put(c)
	}
}

// push appends a copy of b.
func (q *rvQueue) push(b []byte) {
	q.n += len(b)
	for len(b) > 0 {
		var last *rvChunk
		if k := len(q.chunks); k > 0 && q.chunks[k-1].w < rvChunkSize {
			last = q.chunks[k-1]
		} else {
			last = q.get()
			q.chunks = append(q.chunks, last)
		}
		m := copy(last.b[last.w:], b)
		last.w += m
		b = b[m:]
	}
}

// read moves up to len(p) of the oldest bytes into p and returns how many.
func (q *rvQueue) read(p []byte) int {
	n := 0
	for n < len(p) && len(q.chunks) > 0 {
		c := q.chunks[0]
		m := copy(p[n:], c.b[c.r:c.w])
		c.r += m
		n += m
		if c.r == c.w {
			// Done with c: shift the (short) slice rather than reslice
			// its front away, so its array is reused, not regrown.
			copy(q.chunks, q.chunks[1:])
			q.chunks[len(q.chunks)-1] = nil
			q.chunks = q.chunks[:len(q.chunks)-1]
			q.put(c)
		}
	}
	q.n -= n
	return n
}

// reset drops every unread byte and returns the chunks to the pool.
func (q *rvQueue) reset() {
	for i, c := range q.chunks {
		q.put(c)
		q.chunks[i] = nil
	}
	q.chunks = q.chunks[:0]
	q.n = 0
}

// held is the chunk memory q holds: what it pins, rather than its unread
// bytes (a chunk is held whole until all of it is read).
func (q *rvQueue) held() int64 { return int64(len(q.chunks)) * rvChunkSize }
