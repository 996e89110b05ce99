package devnet

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
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

func startBenchDevnet(b *testing.B) *Devnet {
	b.Helper()
	if testing.Short() {
		b.Skip("end-to-end benchmark; skipped with -short")
	}
	o := Options{Dir: b.TempDir(), SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "127.0.0.1:0"}
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
