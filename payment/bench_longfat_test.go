package payment

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// BenchmarkPaidLongFat is issue 10's download target with payment on: a
// destination sends to the client over one 3-hop circuit whose three links
// each have 100 ms of one-way latency and a 100 Mbit/s cap, unpaid and
// paid (a Ledger at every hop, a Client paying from a fake wallet, the
// stream Wrapped: paced reads and the growth gate OpenBuilt sets). It
// reports the payload throughput as a fraction of one link's cap
// (cap-frac) and the widest stream window the paid circuit's gate granted
// (window-MiB). Each iteration warms up for 5 RTTs and measures for at
// least 3 s; run it with -benchtime=1x.
func BenchmarkPaidLongFat(b *testing.B) {
	const (
		lat = 100 * time.Millisecond
		bw  = 100e6 / 8 // bytes per second per link
	)
	for _, paid := range []bool{false, true} {
		name := "unpaid"
		if paid {
			name = "paid"
		}
		b.Run("100ms/"+name, func(b *testing.B) {
			prices := []uint64{1, 1, 2}
			var pn *paidNet
			if paid {
				pn, _ = newHandshakeNet(b, prices, nil)
			} else {
				pn = newRelayNet(b, prices, false)
			}
			for i := range pn.path {
				l := newDelayLink(b, pn.path[i].Addrs, lat, bw)
				pn.path[i].Addrs = []ma.Multiaddr{l.addr()}
			}
			src := streamServer(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			path := pn.path
			var pb *Build
			var cl *Client
			if paid {
				var err error
				cl, err = NewClient(ClientConfig{Reserve: newTestWallet().reserve, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
				if err != nil {
					b.Fatal(err)
				}
				defer cl.Close()
				if pb, err = cl.NewBuild(pn.hops, true); err != nil {
					b.Fatal(err)
				}
				path = pn.paidPath(pb)
			}
			c, err := pn.client.Build(ctx, path)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			var pc *Circuit
			if paid {
				if pc, err = cl.OpenBuilt(c, pb); err != nil {
					b.Fatal(err)
				}
				defer pc.Close()
			}
			s, err := c.Dial(ctx, cell.ServiceExit, src)
			if err != nil {
				b.Fatal(err)
			}
			conn := pc.Wrap(s)
			var got atomic.Int64
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, 32<<10)
				for {
					n, err := conn.Read(buf)
					got.Add(int64(n))
					if err != nil {
						return
					}
				}
			}()
			defer func() {
				_ = conn.Close()
				wg.Wait()
			}()
			rtt := 6 * lat
			warm, span := 5*rtt, max(3*time.Second, 6*rtt)
			b.ResetTimer()
			var frac float64
			for range b.N {
				t := time.NewTimer(warm)
				<-t.C
				n0, t0 := got.Load(), time.Now()
				t.Reset(span)
				<-t.C
				frac += float64(got.Load()-n0) / time.Since(t0).Seconds() / bw
			}
			b.StopTimer()
			frac /= float64(b.N)
			b.ReportMetric(frac, "cap-frac")
			if pc != nil {
				b.ReportMetric(float64(pc.window.Load())/(1<<20), "window-MiB")
				for i, st := range pc.Stats() {
					if st.Stopped || st.OverCharged || c.Err() != nil {
						b.Fatalf("hop %d: %+v (circuit: %v)", i, st, c.Err())
					}
				}
			}
		})
	}
}

// streamServer answers every connection on 127.0.0.1 with bytes until the
// peer closes it or the benchmark ends.
func streamServer(tb testing.TB) cell.Target {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				chunk := make([]byte, 64<<10)
				for {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	tb.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	target, err := cell.ParseTarget(ln.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	return target
}

// delayLink is a loopback TCP proxy in front of a relay: each direction
// carries at most bw bytes per second and delivers each read latency
// after its turn on the link (a long, fat link). The sender's socket
// buffer is the link's queue. Everything ends in tb.Cleanup.
type delayLink struct {
	ln      net.Listener
	latency time.Duration
	bw      float64
	quit    chan struct{}
	wg      sync.WaitGroup
}

func newDelayLink(tb testing.TB, addrs []ma.Multiaddr, latency time.Duration, bw float64) *delayLink {
	tb.Helper()
	var target string
	for _, a := range addrs {
		ip, err1 := a.ValueForProtocol(ma.P_IP4)
		port, err2 := a.ValueForProtocol(ma.P_TCP)
		if err1 == nil && err2 == nil {
			target = net.JoinHostPort(ip, port)
			break
		}
	}
	if target == "" {
		tb.Fatalf("no TCP address in %v", addrs)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &delayLink{ln: ln, latency: latency, bw: bw, quit: make(chan struct{})}
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
			go l.carry(out, in)
			go l.carry(in, out)
		}
	}()
	tb.Cleanup(func() {
		close(l.quit)
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

func (l *delayLink) addr() ma.Multiaddr {
	return ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.ln.Addr().(*net.TCPAddr).Port))
}

// wait blocks until t, or returns false when the link closes first.
func (l *delayLink) wait(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-l.quit:
		return false
	}
}

type delayed struct {
	b  []byte
	at time.Time
}

// carry copies src to dst through the link: reads leave at bw, and each
// is written latency after it left.
func (l *delayLink) carry(dst, src net.Conn) {
	defer l.wg.Done()
	q := make(chan delayed, 8192)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer dst.Close()
		for d := range q {
			if !l.wait(d.at) {
				return
			}
			if _, err := dst.Write(d.b); err != nil {
				return
			}
		}
	}()
	defer close(q)
	var free time.Time // when the link has sent all it read
	for {
		b := make([]byte, 16<<10)
		n, err := src.Read(b)
		if n > 0 {
			now := time.Now()
			if slack := now.Add(-10 * time.Millisecond); free.Before(slack) {
				free = slack // catch up at most 10 ms of timer lateness
			}
			free = free.Add(time.Duration(float64(n) / l.bw * float64(time.Second)))
			if !l.wait(free) {
				return
			}
			select {
			case q <- delayed{b: b[:n], at: free.Add(l.latency)}:
			case <-l.quit:
				return
			}
		}
		if err != nil {
			return
		}
	}
}
