package devnet

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// BenchmarkE2EOnion compares, in one devnet on loopback, the onion-service
// path (client → rendezvous point ← service, 3 + 4 hops) with a 3-hop exit
// circuit to the same demo web server:
//
//	exit-first-byte   new SOCKS credentials per request (a pool circuit)
//	onion-first-byte  a new connection per request: a new rendezvous
//	                  (client rendezvous and intro circuits, the service's
//	                  circuit to the rendezvous point, the end-to-end
//	                  handshake); the descriptor is cached after the first
//	exit-bulk         16 MiB per request over one exit circuit
//	onion-bulk        16 MiB per request over a new rendezvous each
//
// CO_INFUSE_BENCH_NO_VANGUARDS=1 runs the service's circuits without the
// layer-2 vanguard (3 hops instead of 4), to see what the defence costs.
//
// Ratios: onion-first-byte − exit-first-byte is the
// rendezvous's extra latency; onion-bulk MB/s ÷ exit-bulk MB/s the share
// of exit throughput.
func BenchmarkE2EOnion(b *testing.B) {
	if testing.Short() {
		b.Skip("end-to-end benchmark; skipped with -short")
	}
	o := Options{Dir: b.TempDir(), SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "127.0.0.1:0", WebOnion: true, Relays: 4, Configure: func(name string, cfg *node.Config) {
		cfg.Rendezvous.DisableVanguards = os.Getenv("CO_INFUSE_BENCH_NO_VANGUARDS") != ""
	}}
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, o)
	if err != nil {
		b.Fatalf("StartDevnet: %v", err)
	}
	b.Cleanup(func() { d.Close() })
	host, port := hostPort(b, d.WebAddr)
	get := func(b *testing.B, user, h string, p uint16, size int) {
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		defer cancel()
		n, err := socksGet(ctx, d, user, h, p, size)
		if err != nil || n != int64(size) {
			b.Fatalf("fetch from %s: %d bytes, %v", h, n, err)
		}
	}
	// Warm up both paths: circuits, the descriptor, the predicted port.
	for range 20 {
		ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
		_, err := socksGet(ctx, d, "warm", d.WebOnion, 80, 1)
		cancel()
		if err == nil {
			break
		}
	}
	get(b, "warm", d.WebOnion, 80, 1)
	get(b, "warm", host, port, 1)

	b.Run("exit-first-byte", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			get(b, "fb-"+strconv.Itoa(i), host, port, 1)
		}
	})
	b.Run("onion-first-byte", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			get(b, "ofb-"+strconv.Itoa(i), d.WebOnion, 80, 1)
		}
	})
	const size = 16 << 20
	b.Run("exit-bulk", func(b *testing.B) {
		get(b, "bulk", host, port, 1)
		b.SetBytes(size)
		for b.Loop() {
			get(b, "bulk", host, port, size)
		}
	})
	b.Run("onion-bulk", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			get(b, "obulk", d.WebOnion, 80, size)
		}
	})
}
