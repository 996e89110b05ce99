package devnet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/node"

	"github.com/co-infuse/co-infuse/proxy"
)

// TestE2EKillHopMidDownload closes one node of a circuit (the middle relay,
// and in turn the guard and the exit, each in its own devnet) while curl
// downloads 1 GiB through it. curl must fail promptly (the broken circuit
// reaches the SOCKS client as a closed connection, not a hang), and the next
// request of the same isolation pair must succeed on a new circuit that
// avoids the dead node.
func TestE2EKillHopMidDownload(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, tc := range []struct {
		name string
		hop  int
	}{{"middle", 1}, {"guard", 0}, {"exit", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			killHop(t, tc.hop)
		})
	}
}

func killHop(t *testing.T, hop int) {
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()
	const size = 1 << 30
	out := tempFile(t, "big")

	// curl runs until it fails; the test owns it and waits for it.
	curlCtx, stopCurl := context.WithCancel(ctx)
	cmd, _, errOut := curlCmd(curlCtx, t, "--max-time", "170", "--socks5-hostname", socks,
		"--proxy-user", "kill:1", "-o", out, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, size))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start curl: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer func() {
		stopCurl()
		<-done
	}()

	var before node.CircuitInfo
	waitFor(ctx, t, "curl to be downloading over a circuit", func() bool {
		c, ok := circuitFor(d.Client, "kill")
		fi, err := os.Stat(out)
		if !ok || c.Streams == 0 || err != nil || fi.Size() < 4<<20 {
			return false
		}
		before = c
		return true
	})
	checkPath(t, d, before, 3)
	dead := before.Path[hop]
	victim := d.Node(dead)
	fi, _ := os.Stat(out)
	t.Logf("closing hop %d (%s) of circuit %d after %d bytes", hop, dead, before.ID, fi.Size())
	killed := time.Now()
	if err := victim.Close(); err != nil {
		t.Logf("close hop %d: %v", hop, err)
	}

	// A download of 1 GiB at loopback speeds lasts far longer than this
	// deadline, so curl ending inside it is the circuit failure reaching it.
	failCtx, cancelFail := context.WithTimeout(ctx, 30*time.Second)
	defer cancelFail()
	select {
	case err := <-done:
		done <- err // for the deferred wait
		code := exitCode(t, err, cmd.Args)
		if code == 0 {
			t.Fatalf("curl succeeded although hop %d was closed", hop)
		}
		fi, _ := os.Stat(out)
		if fi.Size() >= size {
			t.Fatalf("curl got all %d bytes yet exited %d", fi.Size(), code)
		}
		t.Logf("curl exited %d after %v with %d bytes: %s", code, time.Since(killed).Round(time.Millisecond), fi.Size(), bytes.TrimSpace(errOut.Bytes()))
	case <-failCtx.Done():
		fi, _ := os.Stat(out)
		t.Fatalf("curl still running %v after hop %d closed (%d bytes so far); the broken circuit did not reach the SOCKS client", time.Since(killed).Round(time.Millisecond), hop, fi.Size())
	}

	// The same pair asks again: a fresh circuit without the dead node.
	const small = 1 << 20
	next := tempFile(t, "small")
	r := runCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "kill:1",
		"-o", next, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, small))
	if r.code != 0 {
		// Ask the client directly for the error the SOCKS reply hides,
		// and show what discovery now thinks of each node.
		target, err := cell.ParseTarget(d.WebAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		_, derr := d.Client.Dial(ctx, proxy.Isolation{Username: "kill", Password: "1"}, target)
		var peers []string
		for _, p := range d.Client.Discovery().Known() {
			peers = append(peers, fmt.Sprintf("%s %v dead=%v last=%s", p.Peer, p.Roles, p.Peer.String() == dead, p.LastResult))
		}
		t.Fatalf("request after the hop died: %v; a direct Dial then says: %v\ndiscovery:\n  %s", r, derr, strings.Join(peers, "\n  "))
	}
	if got, n := fileSum(t, next); n != small || got != demoSum(t, small) {
		t.Fatalf("request after the hop died: %d bytes, sha256 %x; want %d bytes of DemoBytes", n, got, small)
	}
	after, ok := circuitFor(d.Client, "kill")
	if !ok {
		t.Fatalf("no circuit for the pair after its request: %+v", d.Client.Circuits())
	}
	if after.ID == before.ID {
		t.Fatalf("the pair still uses circuit %d through the dead relay", after.ID)
	}
	if slices.Contains(after.Path, dead) {
		t.Fatalf("new circuit %d goes through the closed node %s: %v", after.ID, dead, after.Path)
	}
	checkPath(t, d, after, 3)
}
