package circuit

import (
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// BenchmarkLayer measures one hop's layer on one cell: seal, then open.
func BenchmarkLayer(b *testing.B) {
	var k [32]byte
	k[0] = 1
	sealer, _ := newLayer(k)
	opener, _ := newLayer(k)
	var c cell.Cell
	body := c.Body()[:cell.OnionLen(1)]
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := sealer.seal(body); err != nil {
			b.Fatal(err)
		}
		if err := opener.open(body); err != nil {
			b.Fatal(err)
		}
	}
}

// sink is a loopback TCP server that counts what it reads.
type sink struct {
	*tcpServer
	n atomic.Int64
}

func newSink(tb testing.TB) *sink {
	s := &sink{}
	buf := func(c net.Conn) {
		b := make([]byte, 64<<10)
		for {
			n, err := c.Read(b)
			s.n.Add(int64(n))
			if err != nil {
				return
			}
		}
	}
	s.tcpServer = newTCPServer(tb, buf)
	return s
}

func (s *sink) waitFor(tb testing.TB, n int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waitFor(ctx, tb, "sink", func() bool { return s.n.Load() >= n })
}

const benchChunk = 64 << 10

// BenchmarkCircuit3Hop pushes bulk data client → 3 hops → TCP sink.
func BenchmarkCircuit3Hop(b *testing.B) {
	tn := newTestNet(b, 4, nil)
	snk := newSink(b)
	ctx := testCtx(b)
	c := tn.build(ctx, 1, 2, 3)
	s, err := c.Dial(ctx, cell.ServiceExit, snk.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	snk.waitFor(b, int64(b.N)*benchChunk)
}

// BenchmarkRawRelay3 is the baseline for BenchmarkCircuit3Hop: a raw
// libp2p stream relayed by io.Copy through the same three hosts to the
// same kind of sink.
func BenchmarkRawRelay3(b *testing.B) {
	tn := newTestNet(b, 4, nil)
	snk := newSink(b)
	const proto = protocol.ID("/co-infuse/bench-relay/1")
	for i := 1; i <= 3; i++ {
		h := tn.hosts[i]
		next := i + 1
		h.SetStreamHandler(proto, func(in network.Stream) {
			var out io.ReadWriteCloser
			var err error
			if next == 4 {
				out, err = net.Dial("tcp", snk.addr().String())
			} else {
				nh := tn.hosts[next]
				out, err = h.NewStream(context.Background(), nh.ID(), proto)
			}
			if err != nil {
				_ = in.Reset()
				return
			}
			_, _ = io.Copy(out, in)
			_ = out.Close()
			_ = in.Close()
		})
	}
	for i := 1; i <= 3; i++ {
		if err := tn.hosts[i-1].Connect(context.Background(), peer.AddrInfo{ID: tn.hosts[i].ID(), Addrs: tn.hosts[i].Addrs()}); err != nil {
			b.Fatal(err)
		}
	}
	st, err := tn.hosts[0].NewStream(context.Background(), tn.hosts[1].ID(), proto)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	for range b.N {
		if _, err := st.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	snk.waitFor(b, int64(b.N)*benchChunk)
}

// BenchmarkBuild3Hop measures building (and closing) a 3-hop circuit over
// links that are already open.
func BenchmarkBuild3Hop(b *testing.B) {
	tn := newTestNet(b, 4, nil)
	ctx := testCtx(b)
	tn.build(ctx, 1, 2, 3) // opens the links
	path := tn.path(1, 2, 3)
	b.ResetTimer()
	for range b.N {
		c, err := tn.engines[0].Build(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}

// BenchmarkFirstByte measures a 1-byte request and its 1-byte answer on a
// ready 3-hop circuit: on an open stream, and including Dial (BEGIN,
// CONNECTED) and Close.
func BenchmarkFirstByte(b *testing.B) {
	tn := newTestNet(b, 4, nil)
	srv := newTCPServer(b, echo)
	ctx := testCtx(b)
	c := tn.build(ctx, 1, 2, 3)
	one := []byte{'x'}
	rtt := func(s *Stream) {
		if _, err := s.Write(one); err != nil {
			b.Fatal(err)
		}
		var got [1]byte
		if _, err := io.ReadFull(s, got[:]); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("stream", func(b *testing.B) {
		s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for b.Loop() {
			rtt(s)
		}
	})
	b.Run("dial", func(b *testing.B) {
		for b.Loop() {
			s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
			if err != nil {
				b.Fatal(err)
			}
			rtt(s)
			_ = s.Close()
		}
	})
}
