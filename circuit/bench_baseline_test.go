package circuit

import (
	"io"
	"net"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Baselines measured in the same run as the circuit benchmarks, so that the
// README's benchmark command reports ratios rather than absolute figures
// from a noisy machine.

// BenchmarkDirect is bulk data over a plain loopback TCP connection to the
// same kind of sink as BenchmarkCircuit3Hop.
func BenchmarkDirect(b *testing.B) {
	snk := newSink(b)
	c, err := net.Dial("tcp", snk.addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	snk.waitFor(b, int64(b.N)*benchChunk)
}

// BenchmarkFirstByteDirect is a 1-byte request and answer over a fresh
// loopback TCP connection (connect included).
func BenchmarkFirstByteDirect(b *testing.B) {
	srv := newTCPServer(b, echo)
	one := []byte{'x'}
	for b.Loop() {
		c, err := net.Dial("tcp", srv.addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(one); err != nil {
			b.Fatal(err)
		}
		var got [1]byte
		if _, err := io.ReadFull(c, got[:]); err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}

// BenchmarkFirstByteFresh is a 1-byte request and answer on a circuit
// built for it: Build (links already open), Dial, request, answer, Close.
func BenchmarkFirstByteFresh(b *testing.B) {
	tn := newTestNet(b, 4, nil)
	srv := newTCPServer(b, echo)
	ctx := testCtx(b)
	tn.build(ctx, 1, 2, 3) // opens the links
	path := tn.path(1, 2, 3)
	one := []byte{'x'}
	for b.Loop() {
		c, err := tn.engines[0].Build(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(one); err != nil {
			b.Fatal(err)
		}
		var got [1]byte
		if _, err := io.ReadFull(s, got[:]); err != nil {
			b.Fatal(err)
		}
		_ = s.Close()
		_ = c.Close()
	}
}
