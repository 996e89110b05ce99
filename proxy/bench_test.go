package proxy

import (
	"io"
	"net"
	"testing"
	"time"
)

func benchSOCKS(b *testing.B) (*fakeNet, string) {
	b.Helper()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	f := newFakeNet(backend.Addr().String())
	s, err := NewSOCKS(Config{Dial: f.dial, Resolve: f.resolve})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	b.Cleanup(func() {
		_ = s.Close()
		<-served
		_ = backend.Close()
		<-done
	})
	return f, l.Addr().String()
}

func socksConnect(b *testing.B, addr string) net.Conn {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	req := append([]byte{5, 1, 0}, socksDomain(1, "bench.example", 443)...)
	if _, err := c.Write(req); err != nil {
		b.Fatal(err)
	}
	var rep [12]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil || rep[1] != 0 || rep[3] != 0 {
		b.Fatalf("handshake % x, %v", rep, err)
	}
	return c
}

// BenchmarkSOCKSHandshake is one whole CONNECT: TCP connect, greeting,
// request, Dial (to a loopback echo server) and reply.
func BenchmarkSOCKSHandshake(b *testing.B) {
	_, addr := benchSOCKS(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = socksConnect(b, addr).Close()
	}
}

// BenchmarkSOCKSThroughput pushes 32 KiB chunks through an open tunnel and
// reads them back from the echo server (bytes counted one way).
func BenchmarkSOCKSThroughput(b *testing.B) {
	_, addr := benchSOCKS(b)
	c := socksConnect(b, addr)
	defer c.Close()
	_ = c.SetDeadline(time.Time{})
	buf := make([]byte, 32<<10)
	back := make([]byte, len(buf))
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, back); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResolveRequest(b *testing.B) {
	raw := socksDomain(0xF0, "soa.nodes.lightning.directory", 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parseResolveRequest(raw); err != nil {
			b.Fatal(err)
		}
	}
}
