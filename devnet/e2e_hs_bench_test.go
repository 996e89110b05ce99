package devnet

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/rendezvous"
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
// CO_INFUSE_BENCH_SEPARATE_SERVICE=1 publishes the service from a second
// client node instead of the devnet's client.
// CO_INFUSE_BENCH_NO_VANGUARDS=1 runs the service's circuits without the
// layer-2 vanguard (3 hops instead of 4), to see what the defence costs.
// CO_INFUSE_BENCH_FIXED_WINDOWS=1 runs every node with fixed circuit and
// stream windows (no Vegas), to see whether a path is window-limited.
//
// Ratios: onion-first-byte − exit-first-byte is the
// rendezvous's extra latency; onion-bulk MB/s ÷ exit-bulk MB/s the share
// of exit throughput. interleaved also reports the process's CPU time per
// payload MB of each path (cpu-ms/MB) and its share of the wall time
// (busy-%): on a machine shared with other work the MB/s move with the
// load, the CPU cost per MB much less, and their ratio is what the onion
// path would reach with the cores to itself.
func BenchmarkE2EOnion(b *testing.B) {
	if testing.Short() {
		b.Skip("end-to-end benchmark; skipped with -short")
	}
	o := Options{Dir: b.TempDir(), SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "127.0.0.1:0", WebOnion: true, Relays: 4, Configure: func(name string, cfg *node.Config) {
		cfg.Rendezvous.DisableVanguards = os.Getenv("CO_INFUSE_BENCH_NO_VANGUARDS") != ""
		cfg.Limits.FixedWindows = os.Getenv("CO_INFUSE_BENCH_FIXED_WINDOWS") != ""
	}}
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	d, err := Start(ctx, o)
	if err != nil {
		b.Fatalf("StartDevnet: %v", err)
	}
	b.Cleanup(func() { d.Close() })
	if os.Getenv("CO_INFUSE_BENCH_SEPARATE_SERVICE") != "" {
		// The service on a node of its own, as in real use (by default the
		// devnet's client is both ends, so its guard link carries every
		// byte twice).
		d.WebOnion = publishFromNewNode(b, d)
	}
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
	// interleaved alternates the two paths in every iteration, so both see
	// the same machine load (this host is shared), and reports each one's
	// figures and their ratios as metrics.
	b.Run("interleaved", func(b *testing.B) {
		var exitFB, onionFB, exitBulk, onionBulk time.Duration
		var exitCarried, onionCarried uint64
		var exitCPU, onionCPU time.Duration
		i := 0
		for b.Loop() {
			i++
			t0 := time.Now()
			get(b, "ifb-"+strconv.Itoa(i), host, port, 1)
			t1 := time.Now()
			get(b, "iofb-"+strconv.Itoa(i), d.WebOnion, 80, 1)
			t2 := time.Now()
			c0, u0 := relayCarried(d), processCPU(b)
			get(b, "ibulk", host, port, size)
			t3 := time.Now()
			c1, u1 := relayCarried(d), processCPU(b)
			get(b, "iobulk", d.WebOnion, 80, size)
			t4 := time.Now()
			c2, u2 := relayCarried(d), processCPU(b)
			exitCPU += u1 - u0
			onionCPU += u2 - u1
			exitFB += t1.Sub(t0)
			onionFB += t2.Sub(t1)
			exitBulk += t3.Sub(t2)
			onionBulk += t4.Sub(t3)
			exitCarried += c1 - c0
			onionCarried += c2 - c1
		}
		n := float64(i)
		mb := func(d time.Duration) float64 { return n * size / 1e6 / d.Seconds() }
		b.ReportMetric(float64(exitFB.Milliseconds())/n, "exit-first-ms")
		b.ReportMetric(float64(onionFB.Milliseconds())/n, "onion-first-ms")
		b.ReportMetric(mb(exitBulk), "exit-MB/s")
		b.ReportMetric(mb(onionBulk), "onion-MB/s")
		b.ReportMetric(100*mb(onionBulk)/mb(exitBulk), "onion/exit-%")
		// Cell bytes all relays carried (charged, 4 KiB a cell a hop) per
		// payload byte: the work each path costs, whatever the load.
		b.ReportMetric(float64(exitCarried)/(n*size), "exit-hopbytes/B")
		b.ReportMetric(float64(onionCarried)/(n*size), "onion-hopbytes/B")
		// CPU time of the whole process (every node, the web server and
		// the benchmark's client) per payload MB: the work each path
		// costs, whatever else the machine runs; busy% is that CPU time
		// over the wall time, on all cores together (200 = two full
		// cores), so a path well below the cores it has waits on
		// something other than CPU.
		cpuMS := func(u time.Duration) float64 { return float64(u.Milliseconds()) / (n * size / 1e6) }
		b.ReportMetric(cpuMS(exitCPU), "exit-cpu-ms/MB")
		b.ReportMetric(cpuMS(onionCPU), "onion-cpu-ms/MB")
		b.ReportMetric(100*exitCPU.Seconds()/exitBulk.Seconds(), "exit-busy-%")
		b.ReportMetric(100*onionCPU.Seconds()/onionBulk.Seconds(), "onion-busy-%")
	})
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

// relayCarried is the cell bytes all of d's relays have carried so far
// (their ledgers charge cell.Size per cell per hop).
func relayCarried(d *Devnet) uint64 {
	var sum uint64
	for _, n := range d.Nodes {
		if st := n.Status(); st.Relay != nil {
			sum += st.Relay.BytesCarried
		}
	}
	return sum
}

// processCPU is the user and system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// publishFromNewNode starts one more client-role node in d, publishes the
// demo web server from it and returns the onion address.
func publishFromNewNode(b *testing.B, d *Devnet) string {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	cfg := node.DefaultConfig(filepath.Join(b.TempDir(), "service"))
	cfg.Roles = []node.Role{node.RoleClient}
	off := false
	cfg.SOCKS.Enabled = &off
	cfg.Discovery.AllowSameNetwork = true
	cfg.Network.AllowPrivatePeers = true
	cfg.Discovery.Mode = discovery.ModePrivate
	for _, a := range d.Nodes[0].P2PAddrs() {
		cfg.Discovery.Bootstrap = append(cfg.Discovery.Bootstrap, a.String())
	}
	cfg.Log.Level = "warn"
	cfg.ApplyDefaults()
	if err := node.WriteConfig(cfg); err != nil {
		b.Fatal(err)
	}
	n, err := node.New(cfg, node.WithLogger(node.NewLogger(os.Stderr, "warn")))
	if err != nil {
		b.Fatal(err)
	}
	if err := n.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	for {
		r, _ := n.Discovery().Find(ctx, discovery.RoleRelay, 4)
		if len(r) >= 4 || ctx.Err() != nil {
			break
		}
	}
	key, err := rendezvous.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	info, err := n.Rendezvous().Publish(ctx, key, []rendezvous.Port{{Virtual: 80, Target: d.WebAddr.String()}})
	if err != nil || !info.Published {
		b.Fatalf("publish from a second node: %+v %v", info, err)
	}
	return info.Address
}
