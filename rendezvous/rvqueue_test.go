package rendezvous

import (
	"bytes"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestRVQueueFIFO pushes and reads in sizes around the chunk size and
// checks that the bytes come out in order and complete, that n counts the
// unread bytes, and that a drained queue holds no chunks.
func TestRVQueueFIFO(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		push, read  int
		interleaved bool
	}{
		{"cells", 4000, 4096, true},
		{"cell in, big reads", 4000, 64 << 10, true},
		{"big in, small reads", 3*rvChunkSize + 7, 1000, true},
		{"one byte", 1, 1, true},
		{"all in, then all out", rvChunkSize - 1, 5000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(tc.push)))
			var pool sync.Pool
			q := rvQueue{pool: &pool}
			var in, out bytes.Buffer
			buf := make([]byte, tc.read)
			drain := func() {
				n := q.read(buf)
				out.Write(buf[:n])
			}
			for range 200 {
				b := make([]byte, 1+rng.IntN(tc.push))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
				q.push(b)
				in.Write(b)
				if tc.interleaved && rng.IntN(2) == 0 {
					drain()
				}
				if got, want := q.n, in.Len()-out.Len(); got != want {
					t.Fatalf("n = %d, want %d unread", got, want)
				}
			}
			for q.n > 0 {
				drain()
			}
			if len(q.chunks) != 0 {
				t.Fatalf("%d chunks left after draining", len(q.chunks))
			}
			if q.read(buf) != 0 {
				t.Fatal("read from an empty queue returned bytes")
			}
			if !bytes.Equal(in.Bytes(), out.Bytes()) {
				t.Fatalf("read %d bytes that differ from the %d pushed", out.Len(), in.Len())
			}
		})
	}
}

// TestRVQueueReset drops unread bytes and frees the chunks.
func TestRVQueueReset(t *testing.T) {
	t.Parallel()
	q := rvQueue{}
	q.push(make([]byte, 2*rvChunkSize+1))
	if len(q.chunks) != 3 {
		t.Fatalf("%d chunks for 2 chunks and a byte, want 3", len(q.chunks))
	}
	q.reset()
	if q.n != 0 || len(q.chunks) != 0 || q.read(make([]byte, 10)) != 0 {
		t.Fatalf("after reset: n %d, %d chunks", q.n, len(q.chunks))
	}
}
