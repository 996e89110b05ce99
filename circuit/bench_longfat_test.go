package circuit

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/slowlink"
	ma "github.com/multiformats/go-multiaddr"
)

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
		l := slowlink.NewFor(b, tn.hosts[i+1].Addrs(), lf.lat, lf.bw)
		path[i].Addrs = []ma.Multiaddr{l.Addr()}
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
