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

// BenchmarkE2ETorGateway compares, in one run against the same Tor-only
// onion service of a private Tor network (the devnet's demo web server
// published by a tor client with ADD_ONION), two ways in:
//
//	gateway  the co-infuse client's SOCKS port: a 3-hop co-infuse circuit
//	         (guard, middle, tor-gateway node), then the gateway's tor's
//	         own onion-service path (3 hops to the rendezvous point, which
//	         the service's 3-hop circuit meets)
//	tor      a tor client of the same network, through its SocksPort:
//	         the onion-service path alone
//
// Both paths run interleaved in every iteration (the host is shared), with
// circuits warm (one SOCKS user per path, reused): first-ms is a new
// stream's time to the first byte of a 1-byte response, MB/s the rate of
// an 8 MiB download. Expected: the gateway adds one round trip over three
// co-infuse hops to the first byte (BEGIN waits for tor's CONNECT, then the
// request and response cross the co-infuse circuit), and its throughput is
// the slower of the two chains', minus the CPU its relays take from the
// same two cores. Ratios gateway/tor are reported as metrics.
func BenchmarkE2ETorGateway(b *testing.B) {
	if testing.Short() {
		b.Skip("end-to-end benchmark; skipped with -short")
	}
	tn, host := gatewayTor(b)
	d, _ := startGatewayDevnet(b, tn, Options{Relays: 3, Exits: 2})
	onion := torOnlyService(b, host, d)
	ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
	defer cancel()
	direct, err := tn.Client(ctx)
	if err != nil {
		b.Fatalf("a second tor client: %v", err)
	}
	b.Cleanup(func() { direct.Close() })
	gwSocks := d.Client.SOCKSAddr().String()
	torSocks := direct.SocksAddr().String()
	get := func(b *testing.B, socks, user string, size int) (time.Duration, time.Duration) {
		ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
		defer cancel()
		first, total, n, err := socksFetch(ctx, socks, user, onion, size)
		if err != nil || n != int64(size) {
			b.Fatalf("fetch through %s: %d bytes, %v", socks, n, err)
		}
		return first, total
	}
	// Warm up: the descriptor reaches Tor's HSDirs some seconds after
	// ADD_ONION; then both paths have their circuits.
	for _, socks := range []string{gwSocks, torSocks} {
		for {
			wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
			_, _, _, err := socksFetch(wctx, socks, "bench", onion, 1)
			wcancel()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				b.Fatalf("warm-up through %s: %v", socks, err)
			}
		}
	}
	const size = 8 << 20
	b.Run("interleaved", func(b *testing.B) {
		var gwFirst, torFirst, gwBulk, torBulk time.Duration
		i := 0
		for b.Loop() {
			i++
			f, _ := get(b, gwSocks, "bench", 1)
			gwFirst += f
			f, _ = get(b, torSocks, "bench", 1)
			torFirst += f
			_, t := get(b, gwSocks, "bench", size)
			gwBulk += t
			_, t = get(b, torSocks, "bench", size)
			torBulk += t
		}
		n := float64(i)
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / n }
		mb := func(d time.Duration) float64 { return n * size / 1e6 / d.Seconds() }
		b.ReportMetric(ms(gwFirst), "gateway-first-ms")
		b.ReportMetric(ms(torFirst), "tor-first-ms")
		b.ReportMetric(mb(gwBulk), "gateway-MB/s")
		b.ReportMetric(mb(torBulk), "tor-MB/s")
		b.ReportMetric(ms(gwFirst)/ms(torFirst), "first-byte-gateway/tor")
		b.ReportMetric(mb(gwBulk)/mb(torBulk), "throughput-gateway/tor")
	})
	b.Run("fresh-first-byte", func(b *testing.B) {
		// New SOCKS credentials per request: a new co-infuse circuit
		// each time on the gateway path (the gateway's tor keeps its
		// rendezvous circuit), a new rendezvous each time on the tor path.
		var gw, tor time.Duration
		i := 0
		for b.Loop() {
			i++
			f, _ := get(b, gwSocks, "fresh-"+strconv.Itoa(i), 1)
			gw += f
			f, _ = get(b, torSocks, "fresh-"+strconv.Itoa(i), 1)
			tor += f
		}
		n := float64(i)
		b.ReportMetric(float64(gw.Milliseconds())/n, "gateway-first-ms")
		b.ReportMetric(float64(tor.Milliseconds())/n, "tor-first-ms")
		b.ReportMetric(float64(gw)/float64(tor), "gateway/tor")
	})
}

// socksFetch fetches /bytes/size from host:80 through the SOCKS5 server at
// socks as user and returns the time to the response's first byte and to
// its end (both from before the SOCKS connection), and the body's length.
func socksFetch(ctx context.Context, socks, user, host string, size int) (first, total time.Duration, n int64, err error) {
	start := time.Now()
	c, _, err := socksConnect(ctx, socks, user, "x", host, 80)
	if err != nil {
		return 0, 0, 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", size, host); err != nil {
		return 0, 0, 0, err
	}
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return 0, 0, 0, err
	}
	first = time.Since(start)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("status %s", resp.Status)
	}
	n, err = io.Copy(io.Discard, resp.Body)
	return first, time.Since(start), n, err
}
