package dockertest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/devnet"
)

// BenchmarkImageSize reports the image's size next to the stripped static
// binary it carries (target: the image adds under 5 MB).
func BenchmarkImageSize(b *testing.B) {
	img := image(b)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ic := inspectImage(b, ctx, img)
	name := "co-infuse-size-" + uniq()
	docker(b, ctx, "create", "--name", name, img)
	b.Cleanup(func() { run(context.Background(), "docker", "rm", "-f", name) })
	bin := filepath.Join(b.TempDir(), "co-infuse")
	docker(b, ctx, "cp", name+":/co-infuse", bin)
	st, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
	}
	b.ReportMetric(float64(ic.Size)/1e6, "image-MB")
	b.ReportMetric(float64(st.Size())/1e6, "binary-MB")
	b.ReportMetric(float64(ic.Size-st.Size())/1e6, "added-MB")
}

// BenchmarkColdStart is the time from `docker run` of a relay to its health
// check passing (health polled every 100 ms).
func BenchmarkColdStart(b *testing.B) {
	img := image(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var total time.Duration
	for range b.N {
		name := "co-infuse-cold-" + uniq()
		start := time.Now()
		docker(b, ctx, "run", "-d", "--name", name, "--network", "none",
			"--health-interval", "100ms", "--health-start-period", "0s",
			"-e", "CO_INFUSE_DISCOVERY_MODE=private", "-e", "CO_INFUSE_ROLES=relay,exit", img, "run")
		waitFor(b, ctx, "healthy", func() (bool, error) {
			s, err := run(ctx, "docker", "inspect", "-f", "{{.State.Health.Status}}", name)
			return s == "healthy", err
		})
		total += time.Since(start)
		b.StopTimer()
		run(ctx, "docker", "rm", "-f", name)
		b.StartTimer()
	}
	b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms-to-healthy")
}

// BenchmarkThroughput downloads 100 MB through a 3-hop circuit of the
// container network (curl in a container, hops on three bridge networks)
// and through the loopback devnet on this host (curl on the host), in the
// same run, and reports both and their ratio. Run it with -benchtime=1x.
func BenchmarkThroughput(b *testing.B) {
	if _, err := exec.LookPath("curl"); err != nil {
		b.Skip("needs curl on the host for the loopback devnet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	const size = 100_000_000
	c := startDevnet(b, ctx)
	// Container network: warm the circuit, then time one download.
	if _, err := c.download(ctx, "bench", 1000, time.Minute); err != nil {
		b.Fatal(err)
	}
	var container time.Duration
	for range b.N {
		took, err := c.download(ctx, "bench", size, 10*time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		container += took
	}
	// Loopback devnet, the same shape: 3 relays, 3 exits, a client.
	d, err := devnet.Start(ctx, devnet.Options{
		Dir: b.TempDir(), Relays: 3, Exits: 3,
		SOCKSListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0", WebListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { d.Close() })
	loop := func(n int64) (time.Duration, error) {
		start := time.Now()
		out, err := run(ctx, "curl", "-sS", "--fail", "--max-time", "600", "--socks5-hostname", d.Client.SOCKSAddr().String(),
			"--proxy-user", "bench:x", "-o", "/dev/null", "-w", "%{size_download}",
			"http://"+d.WebAddr.String()+"/bytes/"+strconv.FormatInt(n, 10))
		if err == nil && strings.TrimSpace(out) != strconv.FormatInt(n, 10) {
			err = io.ErrUnexpectedEOF
		}
		return time.Since(start), err
	}
	waitFor(b, ctx, "a first download through the loopback devnet", func() (bool, error) {
		_, err := loop(1000)
		return err == nil, err
	})
	var loopback time.Duration
	for range b.N {
		took, err := loop(size)
		if err != nil {
			b.Fatal(err)
		}
		loopback += took
	}
	cMBs := float64(size*b.N) / 1e6 / container.Seconds()
	lMBs := float64(size*b.N) / 1e6 / loopback.Seconds()
	b.ReportMetric(cMBs, "container-MB/s")
	b.ReportMetric(lMBs, "loopback-MB/s")
	b.ReportMetric(cMBs/lMBs, "container/loopback")
}
