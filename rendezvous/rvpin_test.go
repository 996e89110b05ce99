package rendezvous

import (
	"crypto/rand"
	"errors"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// splicePair joins a client and a service rvConn at s through cookie
// (circuit cookie cc for both streams), as two circuits' engines would,
// and returns them with the status bytes read.
func splicePair(t testing.TB, s *Server, cc [cell.CookieLen]byte) (cl, sv net.Conn) {
	t.Helper()
	begin := func() net.Conn {
		c, err := s.Begin(t.Context(), circuit.BeginRequest{Service: cell.ServiceRendezvous, Target: mustTarget(TargetRendezvous), Cookie: cc})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var cookie [cookieLen]byte
	rand.Read(cookie[:])
	var st [1]byte
	cl = begin()
	if _, err := cl.Write(append([]byte{rvClient}, cookie[:]...)); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Read(st[:]); err != nil || st[0] != statusOK {
		t.Fatalf("client join: %v, status %d", err, st[0])
	}
	sv = begin()
	if _, err := sv.Write(append([]byte{rvService}, cookie[:]...)); err != nil {
		t.Fatal(err)
	}
	if _, err := sv.Read(st[:]); err != nil || st[0] != statusOK {
		t.Fatalf("service join: %v, status %d", err, st[0])
	}
	return cl, sv
}

// stallSplices joins pairs splices at s whose client end never reads
// (its circuit's engine stalls the pump, as when the client withholds its
// SENDMEs) and has each service end write cell-sized chunks until a write
// waits past a short deadline (the queue is full: the engine would stop
// reading that stream and its window would close). It returns the bytes
// each side took, the heap pinned per stalled side and the conns (also
// closed when the test ends).
func stallSplices(t *testing.T, s *Server, pairs int) (took []int, perSide float64, conns []net.Conn) {
	t.Helper()
	base := heapInUse()
	chunk := make([]byte, 4<<10) // about one cell's payload
	for i := range pairs {
		cl, sv := splicePair(t, s, [cell.CookieLen]byte{byte(i), byte(i >> 8), 0x5e})
		t.Cleanup(func() { cl.Close(); sv.Close() })
		conns = append(conns, cl, sv)
		sv.SetWriteDeadline(time.Now().Add(time.Millisecond))
		n := 0
		for {
			if _, err := sv.Write(chunk); err != nil {
				if !errors.Is(err, errWriteTimeout) {
					t.Fatalf("pair %d: write after %d bytes: %v, want errWriteTimeout once full", i, n, err)
				}
				break
			}
			if n += len(chunk); n > 4*maxRVBuffer {
				t.Fatalf("pair %d: a side that is never read took %d bytes without waiting", i, n)
			}
		}
		took = append(took, n)
	}
	return took, float64(int64(heapInUse())-int64(base)) / float64(pairs), conns
}

// TestRendezvousSplicePinnedBytes: what one spliced stream can make the
// rendezvous point hold outside the circuit engine's memory budget, which
// charges a last-hop stream 32 KiB plus only the cells the engine itself
// buffers (THREAT_MODEL.md "Onion services"). A side nobody reads takes
// maxRVBuffer (128 KiB; 256 KiB before, which pinned 279,647 B of heap a
// side) and then makes its writer wait; once all splices hold
// MaxSpliceBuffer, each further side takes at most minRVBuffer. The test
// checks both bounds in bytes taken and in heap pinned per stalled side.
func TestRendezvousSplicePinnedBytes(t *testing.T) {
	// Not parallel: the heap is measured.
	const chunk = 4 << 10
	t.Run("per side", func(t *testing.T) {
		const pairs = 32
		s := NewServer(ServerConfig{})
		t.Cleanup(func() { s.Close() })
		took, per, _ := stallSplices(t, s, pairs)
		for i, n := range took {
			if n < maxRVBuffer || n >= maxRVBuffer+chunk {
				t.Errorf("pair %d: a stalled side took %d bytes, want maxRVBuffer (%d) and less than one more write", i, n, maxRVBuffer)
			}
		}
		t.Logf("a stalled splice side pins %.0f B of heap at the rendezvous point (%d B queued)", per, took[0])
		// The queue's chunks (maxRVBuffer and the chunk the last write
		// opened) and the conn itself: at most 160 KiB, 5 times what the
		// budget charges a stream (not 8), whatever maxRVBuffer says.
		if bound := float64(min(maxRVBuffer+2*rvChunkSize, 160<<10)); per > bound {
			t.Fatalf("a stalled side pins %.0f B, want ≤ %.0f", per, bound)
		}
		if got, want := s.spliced.Load(), int64(pairs)*int64(maxRVBuffer+rvChunkSize); got > want || got < int64(pairs)*maxRVBuffer {
			t.Fatalf("spliced counts %d B for %d stalled sides, want %d..%d", got, pairs, pairs*maxRVBuffer, want)
		}
	})
	t.Run("all splices", func(t *testing.T) {
		// A cap that 8 sides reach: the other 56 take minRVBuffer each.
		const pairs, full = 64, 8
		limit := int64(full * maxRVBuffer)
		s := NewServer(ServerConfig{MaxSpliceBuffer: limit})
		t.Cleanup(func() { s.Close() })
		took, per, conns := stallSplices(t, s, pairs)
		total := 0
		for i, n := range took {
			total += n
			if i >= full+1 && (n < minRVBuffer || n >= minRVBuffer+chunk) {
				t.Errorf("pair %d: past MaxSpliceBuffer a stalled side took %d bytes, want minRVBuffer (%d) and less than one more write", i, n, minRVBuffer)
			}
		}
		// Pinned in all: the cap, the sides past it at up to two chunks
		// each (minRVBuffer and the chunk the last write opened), and the
		// conns.
		bound := float64(limit+int64(pairs)*2*rvChunkSize) / pairs
		t.Logf("with MaxSpliceBuffer %d B, %d stalled sides took %d B and pin %.0f B of heap each", limit, pairs, total, per)
		if per > bound {
			t.Fatalf("stalled sides pin %.0f B each, want ≤ %.0f", per, bound)
		}
		// Closed conns give their chunks back and settle the count.
		for _, c := range conns {
			c.Close()
		}
		if got := s.spliced.Load(); got != 0 {
			t.Fatalf("spliced counts %d B after every conn closed, want 0", got)
		}
	})
}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkRendezvousSplice: 1 MiB per iteration through one splice at
// the rendezvous point, written and read a cell's payload at a time as
// the two circuits' stream pumps do; the queue cap per side must not
// slow the hand-off.
func BenchmarkRendezvousSplice(b *testing.B) {
	s := NewServer(ServerConfig{})
	defer s.Close()
	cl, sv := splicePair(b, s, [cell.CookieLen]byte{0xbe})
	defer cl.Close()
	defer sv.Close()
	const size, step = 1 << 20, 4 << 10
	p := make([]byte, step)
	got := make([]byte, step)
	b.SetBytes(size)
	for b.Loop() {
		errc := make(chan error, 1)
		go func() {
			for range size / step {
				if _, err := sv.Write(p); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for n := 0; n < size; {
			k, err := cl.Read(got)
			if err != nil {
				b.Fatal(err)
			}
			n += k
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}
