package devnet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// BenchmarkE2EDownload measures bulk throughput through a 3-hop devnet
// circuit: one SOCKS stream per iteration fetching 16 MiB from the demo web
// server, all iterations on the same (already built) circuit.
func BenchmarkE2EDownload(b *testing.B) {
	d := startBenchDevnet(b)
	const size = 16 << 20
	host, port := hostPort(b, d.WebAddr)
	fetch := func() {
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		defer cancel()
		n, err := socksGet(ctx, d, "bench", host, port, size)
		if err != nil || n != size {
			b.Fatalf("fetch: %d bytes, %v", n, err)
		}
	}
	fetch() // build the circuit outside the timing
	b.SetBytes(size)
	b.ResetTimer()
	for b.Loop() {
		fetch()
	}
}

// BenchmarkE2EFirstByte measures a new isolation pair's first request: path
// selection, a 3-hop build, BEGIN at the exit and the first response byte.
func BenchmarkE2EFirstByte(b *testing.B) {
	d := startBenchDevnet(b)
	host, port := hostPort(b, d.WebAddr)
	i := 0
	for b.Loop() {
		i++
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		if _, err := socksGet(ctx, d, "first-"+strconv.Itoa(i), host, port, 1); err != nil {
			b.Fatalf("request %d: %v", i, err)
		}
		cancel()
	}
}

// BenchmarkE2EFreshCredentials measures the first response byte of a
// connection with SOCKS credentials never seen before (every connection
// bitcoind makes with -proxyrandomize), three ways in one run:
//
//	direct    the same request straight to the demo server (the baseline)
//	prebuilt  through the devnet, served by a pre-built circuit
//	build     through a devnet with pre-built circuits off: a 3-hop build
//	          on the critical path
//
// scripts/bench.sh prints each against direct. Before each prebuilt
// iteration the timer stops until the pool is full again and idle, so the
// figure is the latency a connection sees when the pool has kept up (on one
// machine a refill's handshakes would otherwise run on the same cores as
// the timed request).
func BenchmarkE2EFreshCredentials(b *testing.B) {
	b.Run("direct", func(b *testing.B) {
		d := startBenchDevnet(b)
		for b.Loop() {
			ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
			if err := directFirstByte(ctx, d.WebAddr.String()); err != nil {
				b.Fatal(err)
			}
			cancel()
		}
	})
	fresh := func(b *testing.B, d *Devnet, beforeEach func()) {
		host, port := hostPort(b, d.WebAddr)
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		defer cancel()
		if _, err := socksGet(ctx, d, "warm-up", host, port, 1); err != nil { // the port is now predicted
			b.Fatal(err)
		}
		i := 0
		for b.Loop() {
			i++
			if beforeEach != nil {
				b.StopTimer()
				beforeEach()
				b.StartTimer()
			}
			ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
			if _, err := socksGet(ctx, d, "fresh-"+strconv.Itoa(i), host, port, 1); err != nil {
				b.Fatalf("request %d: %v", i, err)
			}
			cancel()
		}
	}
	b.Run("prebuilt", func(b *testing.B) {
		d := startBenchDevnet(b)
		before := d.Client.PoolStats()
		fresh(b, d, func() {
			ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
			defer cancel()
			// The pool has kept up: every pre-built circuit is back and
			// no build runs (its handshakes share these 2 cores).
			want := d.Client.Config().Circuit.Preemptive
			for st := d.Client.PoolStats(); st.Clean < want || st.Building > 0; st = d.Client.PoolStats() {
				select {
				case <-ctx.Done():
					b.Fatal("no pre-built circuit became ready")
				case <-time.After(time.Millisecond):
				}
			}
		})
		after := d.Client.PoolStats()
		b.ReportMetric(float64(after.Claims-before.Claims)/float64(b.N), "claims/op")
		b.ReportMetric(float64(d.Client.Config().Circuit.Preemptive*d.Client.Config().Circuit.Hops), "circuit-hops-held")
	})
	b.Run("build", func(b *testing.B) {
		d := startBenchDevnet(b, func(name string, cfg *node.Config) { cfg.Circuit.Preemptive = -1 })
		fresh(b, d, nil)
	})
}

// directFirstByte sends the benchmark's request straight to web and waits
// for the first byte of the answer.
func directFirstByte(ctx context.Context, web string) error {
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", web)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /bytes/1 HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", web); err != nil {
		return err
	}
	_, err = c.Read(make([]byte, 1))
	return err
}

func startBenchDevnet(b *testing.B, configure ...func(string, *node.Config)) *Devnet {
	b.Helper()
	if testing.Short() {
		b.Skip("end-to-end benchmark; skipped with -short")
	}
	o := Options{Dir: b.TempDir(), SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "127.0.0.1:0"}
	if len(configure) > 0 {
		o.Configure = configure[0]
	}
	ctx, cancel := context.WithTimeout(b.Context(), 90*time.Second)
	defer cancel()
	d, err := Start(ctx, o)
	if err != nil {
		b.Fatalf("StartDevnet: %v", err)
	}
	b.Cleanup(func() { d.Close() })
	return d
}

// socksGet fetches /bytes/size over the client's SOCKS port as user and
// returns how many body bytes arrived.
func socksGet(ctx context.Context, d *Devnet, user, host string, port uint16, size int) (int64, error) {
	c, _, err := socksConnect(ctx, d.Client.SOCKSAddr().String(), user, "x", host, port)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", size, host); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %s", resp.Status)
	}
	return io.Copy(io.Discard, resp.Body)
}
