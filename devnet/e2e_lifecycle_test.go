package devnet

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"
)

// TestE2ECloseDuringDownload closes the whole devnet while curl is
// downloading through it: Close must return (front ends, circuits, hosts
// and every goroutine stopped) within a bound, curl must fail rather than
// hang, and a second Close is a no-op. TestMain's leak check then finds
// nothing left.
func TestE2ECloseDuringDownload(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	out := tempFile(t, "big")
	cmd, _, errOut := curlCmd(ctx, t, "--max-time", "110", "--socks5-hostname", d.Client.SOCKSAddr().String(),
		"--proxy-user", "close:1", "-o", out, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, 1<<30))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start curl: %v", err)
	}
	curlDone := make(chan error, 1)
	go func() { curlDone <- cmd.Wait() }()
	defer func() {
		cancel()
		<-curlDone
	}()
	waitFor(ctx, t, "curl to be downloading", func() bool {
		c, ok := circuitFor(d.Client, "close")
		return ok && c.Streams > 0
	})

	closed := make(chan error, 1)
	go func() { closed <- d.Close() }()
	closeCtx, cancelClose := context.WithTimeout(ctx, 30*time.Second)
	defer cancelClose()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("devnet Close during a download: %v", err)
		}
	case <-closeCtx.Done():
		t.Fatal("devnet Close did not return within 30s of being called during a download")
	}
	select {
	case err := <-curlDone:
		curlDone <- err
		if code := exitCode(t, err, cmd.Args); code == 0 {
			t.Fatal("curl finished a 1 GiB download although the network closed under it")
		} else {
			t.Logf("curl exited %d: %s", code, errOut.String())
		}
	case <-closeCtx.Done():
		t.Fatal("curl still running 30s after the devnet closed")
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := d.Client.Start(ctx); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestE2EIsolationCapSparesLiveStreams opens more isolation pairs than the
// client keeps circuits for (circuit.max_isolated, default 64) while the
// first pair still has a stream open. The pool may close idle circuits to
// make room, but not one carrying a live stream: bitcoind -proxyrandomize
// and lnd tor.streamisolation give every long-lived peer connection its own
// pair, so evicting a busy circuit would cut a peer connection whenever the
// 65th connection opens.
func TestE2EIsolationCapSparesLiveStreams(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	host, port := hostPort(t, d.WebAddr)
	socks := d.Client.SOCKSAddr().String()
	max := d.Client.Config().Circuit.MaxIsolated

	// The first pair's stream: an HTTP request whose response we read in
	// pieces, so the stream stays open across the other pairs' requests.
	live, _, err := socksConnect(ctx, socks, "live", "x", host, port)
	if err != nil {
		t.Fatalf("SOCKS CONNECT for the live stream: %v", err)
	}
	defer live.Close()
	live.SetDeadline(time.Now().Add(3 * time.Minute))
	const size = 1 << 30
	if _, err := fmt.Fprintf(live, "GET /bytes/%d HTTP/1.1\r\nHost: %s\r\n\r\n", size, host); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(live, make([]byte, 4096)); err != nil {
		t.Fatalf("live stream first read: %v", err)
	}
	first, ok := circuitFor(d.Client, "live")
	if !ok {
		t.Fatal("no circuit for the live pair")
	}

	for i := range max + 1 {
		user := "pair-" + strconv.Itoa(i)
		if _, err := socksGet(ctx, d, user, host, port, 1); err != nil {
			t.Fatalf("request for %s: %v", user, err)
		}
	}
	// The live stream's circuit is still in the table, and the stream
	// keeps flowing: more than socket and window buffers could hold.
	if c, ok := circuitFor(d.Client, "live"); !ok || c.ID != first.ID {
		t.Errorf("after %d other pairs opened (cap %d), the live pair's circuit %d is gone from the table (now %+v, present=%v)", max+1, max, first.ID, c, ok)
	}
	if n, err := io.CopyN(io.Discard, live, 64<<20); err != nil {
		t.Fatalf("live stream died after %d other pairs opened (cap %d): %v after %d more bytes", max+1, max, err, n)
	}
}
