// Package slowlink is a loopback TCP proxy that makes the path through it
// a long, fat link, for benchmarks of window growth and paid throughput.
//
// Each direction carries at most bw bytes per second and delivers every
// byte latency after it left. The sending side's socket buffer is the
// link's queue (reads are paced at bw). It stands in for go-libp2p's
// mocknet, whose LinkOptions set latency and bandwidth too, but whose
// streams deliver one write at a time (a write waits until the one before
// it has arrived), so a mocknet link carries one write per latency however
// wide it is and cannot show a window limit.
package slowlink

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// catchUp is how much timer lateness the pacing makes up for instead of
// losing it (a token bucket of catchUp's worth of bytes).
const catchUp = 10 * time.Millisecond

// Link is one proxy in front of one TCP target.
type Link struct {
	ln      net.Listener
	latency time.Duration
	bw      float64 // bytes per second
	done    chan struct{}
	wg      sync.WaitGroup
}

// New starts a proxy on 127.0.0.1 in front of target (host:port) with the
// given one-way latency and bandwidth in bytes per second. Everything it
// starts is closed, and its goroutines waited for, in tb.Cleanup.
func New(tb testing.TB, target string, latency time.Duration, bw float64) *Link {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	l := &Link{ln: ln, latency: latency, bw: bw, done: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn // guarded by mu; closed in Cleanup
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

// NewFor is New in front of the first TCP address of addrs (a libp2p
// host's listen addresses).
func NewFor(tb testing.TB, addrs []ma.Multiaddr, latency time.Duration, bw float64) *Link {
	tb.Helper()
	return New(tb, Target(tb, addrs), latency, bw)
}

// Target is the host:port of the first IPv4 TCP address in addrs.
func Target(tb testing.TB, addrs []ma.Multiaddr) string {
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

// Addr is the proxy's address as a libp2p multiaddr.
func (l *Link) Addr() ma.Multiaddr {
	return ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", l.ln.Addr().(*net.TCPAddr).Port))
}

// until waits for t or for the link to close; false if it closed.
func (l *Link) until(t time.Time) bool {
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
func (l *Link) pipe(dst, src net.Conn) {
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
			if slack := time.Now().Add(-catchUp); dep.Before(slack) {
				dep = slack
			}
			dep = dep.Add(time.Duration(float64(n) / l.bw * float64(time.Second)))
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
