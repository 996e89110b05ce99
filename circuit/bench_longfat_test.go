package circuit

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	ma "github.com/multiformats/go-multiaddr"
)

// slowLink is a loopback TCP proxy in front of one host that makes the
// path through it a long, fat link: each direction carries at most bw
// bytes per second and delivers every byte latency after it left. The
// sending host's socket buffer is the link's queue (its reads are paced
// at bw). Everything is closed in tb.Cleanup.
//
// It stands in for go-libp2p's mocknet, whose LinkOptions set latency and
// bandwidth too, but whose streams deliver one write at a time: a write
// waits until the one before it has arrived, so a mocknet link carries one
// write per latency however wide it is, and cannot show a window limit.
type slowLink struct {
	ln      net.Listener
	latency time.Duration
	bw      float64 // bytes per second
	done    chan struct{}
	wg      sync.WaitGroup
}

func newSlowLink(tb testing.TB, target string, latency time.Duration, bw float64) *slowLink {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &slowLink{ln: ln, latency: latency, bw: bw, done: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			l.wg.Add(2)
			go l.pipe(out, in)
			go l.pipe(in, out)
		}
	}()
	tb.Cleanup(func() {
		close(l.done)
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		l.wg.Wait()
	})
	return l
}

// addr is the proxy's address as a libp2p multiaddr.
func (l *slowLink) addr() ma.Multiaddr {
	a := l.ln.Addr().(*net.TCPAddr)
	return ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", a.Port))
}

// until waits for t or for the link to close; false if it closed.
func (l *slowLink) until(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-l.done:
		return false
	}
}

type flight struct {
	b  []byte
	at time.Time
}

// pipe carries src to dst: reads are paced at bw, and each read is
// written latency after its turn on the link.
func (l *slowLink) pipe(dst, src net.Conn) {
	defer l.wg.Done()
	ch := make(chan flight, 8192)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer dst.Close()
		for f := range ch {
			if !l.until(f.at) {
				return
			}
			if _, err := dst.Write(f.b); err != nil {
				return
			}
		}
	}()
	defer close(ch)
	var dep time.Time // when the link has sent everything read so far
	for {
		b := make([]byte, 16<<10)
		n, err := src.Read(b)
		if n > 0 {
			now := time.Now()
			// Up to 10 ms of timer lateness is caught up, not lost (a token
			// bucket of 10 ms of bytes).
			dep = later(dep, now.Add(-10*time.Millisecond)).Add(time.Duration(float64(n) / l.bw * float64(time.Second)))
			if !l.until(dep) {
				return
			}
			select {
			case ch <- flight{b: b[:n], at: dep.Add(l.latency)}:
			case <-l.done:
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// BenchmarkLongFatCircuit pushes bulk data over one 3-hop circuit whose
// three links each have the given one-way latency and a 100 Mbit/s cap,
// with the fixed windows of old (Limits.FixedWindows) and with windows
// grown from measured RTT (PROTOCOL.md §5.2), and reports the payload
// throughput as a fraction of one link's cap (cap-frac). Each iteration
// warms up for 5 RTTs (slow start) and then measures for at least 3 s;
// run it with -benchtime=1x.
func BenchmarkLongFatCircuit(b *testing.B) {
	const bw = 100e6 / 8 // bytes per second per link
	for _, lat := range []time.Duration{20 * time.Millisecond, 100 * time.Millisecond} {
		for _, fixed := range []bool{true, false} {
			name := "grown"
			if fixed {
				name = "fixed"
			}
			b.Run(fmt.Sprintf("%v/%s", lat, name), func(b *testing.B) {
				benchLongFat(b, longFat{lat: lat, bw: bw, fixed: fixed})
			})
		}
	}
}

// paidGate is the growth gate a paid circuit runs under (payment's
// allowsWindow, Circuit.SetGrowthGate): a stream's window may not pass
// the hop's grace of 2 MiB (payment.SessionGraceBytes), one base window.
func paidGate(window int64) bool { return window <= 2<<20 }

// BenchmarkLongFatDownload is BenchmarkLongFatCircuit the other way, a
// destination sending to the client over 100 ms links, where the client's
// stream credit (§5.2) bounds what is in flight: unpaid (the window grows
// while the client reads) and with the growth gate a paid circuit has
// (paidGate), which keeps the stream at its base window of 512 cells.
func BenchmarkLongFatDownload(b *testing.B) {
	const bw = 100e6 / 8
	for _, tc := range []struct {
		name string
		gate func(int64) bool
	}{{"unpaid", nil}, {"paid-gate", paidGate}} {
		b.Run("100ms/"+tc.name, func(b *testing.B) {
			benchLongFat(b, longFat{lat: 100 * time.Millisecond, bw: bw, down: true, gate: tc.gate})
		})
	}
}

// longFat is one BenchmarkLongFat* case.
type longFat struct {
	lat   time.Duration
	bw    float64 // bytes per second per link
	fixed bool    // Limits.FixedWindows on every node
	down  bool    // the destination sends, the client reads
	gate  func(window int64) bool
}

func benchLongFat(b *testing.B, lf longFat) {
	tn := newTestNet(b, 4, func(_ int, cfg *Config) { cfg.Limits.FixedWindows = lf.fixed })
	path := tn.path(1, 2, 3)
	for i := range path {
		// Every hop, the first included, is reached through a slow link.
		l := newSlowLink(b, tcpTarget(b, tn.hosts[i+1].Addrs()), lf.lat, lf.bw)
		path[i].Addrs = []ma.Multiaddr{l.addr()}
	}
	snk := newSink(b)
	dst := snk.addr()
	if lf.down {
		src := newTCPServer(b, func(c net.Conn) {
			buf := make([]byte, benchChunk)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
		dst = src.addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c, err := tn.engines[0].Build(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if lf.gate != nil {
		c.SetGrowthGate(lf.gate)
	}
	s, err := c.Dial(ctx, cell.ServiceExit, dst)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, benchChunk)
		for {
			if lf.down {
				n, err := s.Read(buf)
				snk.n.Add(int64(n))
				if err != nil {
					return
				}
				continue
			}
			if _, err := s.Write(buf); err != nil {
				return
			}
		}
	}()
	defer func() {
		_ = s.SetDeadline(time.Now())
		_ = s.Close()
		wg.Wait()
	}()
	rtt := 6 * lf.lat
	warm, span := 5*rtt, max(3*time.Second, 6*rtt)
	b.ResetTimer()
	var frac float64
	for range b.N {
		t := time.NewTimer(warm)
		<-t.C
		n0, t0 := snk.n.Load(), time.Now()
		t.Reset(span)
		<-t.C
		rate := float64(snk.n.Load()-n0) / time.Since(t0).Seconds()
		frac += rate / lf.bw
	}
	b.StopTimer()
	frac /= float64(b.N)
	b.ReportMetric(frac, "cap-frac")
	b.ReportMetric(frac*lf.bw/1e6, "MB/s")
	c.ep.mu.Lock()
	b.ReportMetric(float64(c.ep.cwndLocked()), "cwnd")
	b.ReportMetric(float64(c.ep.inflight), "inflight")
	b.ReportMetric(float64(s.sendWin), "stream-credit")
	b.ReportMetric(float64(c.ep.extra.Load()), "extra-recv-credit")
	c.ep.mu.Unlock()
}

// tcpTarget is the host:port of a host's first TCP address.
func tcpTarget(tb testing.TB, addrs []ma.Multiaddr) string {
	tb.Helper()
	for _, a := range addrs {
		ip, err1 := a.ValueForProtocol(ma.P_IP4)
		port, err2 := a.ValueForProtocol(ma.P_TCP)
		if err1 == nil && err2 == nil {
			return net.JoinHostPort(ip, port)
		}
	}
	tb.Fatalf("no TCP address in %v", addrs)
	return ""
}
