package payment

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/slowlink"
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
				l := slowlink.NewFor(b, pn.path[i].Addrs, lat, bw)
				pn.path[i].Addrs = []ma.Multiaddr{l.Addr()}
			}
			src := streamServer(b)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c, pc := pn.benchCircuit(b, ctx, paid)
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
