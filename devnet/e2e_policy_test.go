package devnet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestE2EExitPolicyRefusesLoopback runs a devnet whose exits keep the
// default policy and checks that a request for the loopback web server is
// refused at the exit and reported to each kind of client as a policy
// refusal: curl's SOCKS error 97 with reply 2, SOCKS5 reply 0x02 on the
// wire, HTTP 403 on the CONNECT port. Private ranges are left to exit/'s
// policy tests: this test dials loopback only.
func TestE2EExitPolicyRefusesLoopback(t *testing.T) {
	skipShort(t)
	t.Parallel()
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2, ExitsDefaultPolicy: true})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	url := fmt.Sprintf("http://%s/", d.WebAddr)
	socks := d.Client.SOCKSAddr().String()

	t.Run("curl socks5", func(t *testing.T) {
		r := runCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "pol:1", url)
		// curl 7.88 reports a SOCKS5 refusal as CURLE_PROXY (97) with the
		// reply code in brackets; libcurl's proxy code for it is
		// CURLPX_REPLY_NOT_ALLOWED ("connection not allowed by ruleset").
		if r.code != 97 || !strings.Contains(r.stderr, "(2)") {
			t.Fatalf("curl: %v; want exit 97 and SOCKS reply (2), not allowed by ruleset", r)
		}
		t.Logf("curl: %v", r)
		if r.stdout != "" {
			t.Fatalf("curl printed a page through a refused stream: %q", r.stdout)
		}
		// A refusal is an answer from the exit, not a broken path: the
		// circuit stays and the next refusal comes over the same one.
		c1, ok := circuitFor(d.Client, "pol")
		if !ok {
			t.Fatalf("the refused request left no circuit for its pair: %+v", d.Client.Circuits())
		}
		r = runCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "pol:1", url)
		if r.code != 97 {
			t.Fatalf("second curl: %v; want exit 97", r)
		}
		if c2, ok := circuitFor(d.Client, "pol"); !ok || c2.ID != c1.ID {
			t.Fatalf("after a policy refusal the pair moved from circuit %d to %+v (ok=%v)", c1.ID, c2, ok)
		}
	})

	// A name that resolves to loopback at the exit is refused too: the
	// policy applies to the resolved address, not only to IP literals.
	t.Run("curl socks5 localhost name", func(t *testing.T) {
		_, port := hostPort(t, d.WebAddr)
		r := runCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "pol-name:1",
			fmt.Sprintf("http://localhost:%d/", port))
		if r.code != 97 || !strings.Contains(r.stderr, "(2)") {
			t.Fatalf("curl to localhost by name: %v; want exit 97 and SOCKS reply (2)", r)
		}
	})

	t.Run("raw socks5 reply", func(t *testing.T) {
		host, port := hostPort(t, d.WebAddr)
		for _, user := range []string{"", "pol-raw"} {
			c, rep, err := socksConnect(ctx, socks, user, "x", host, port)
			if err == nil {
				c.Close()
				t.Fatalf("SOCKS CONNECT to loopback (user %q) succeeded through default-policy exits", user)
			}
			if rep.rep != 0x02 {
				t.Fatalf("SOCKS CONNECT to loopback (user %q): reply %#02x (%v), want 0x02 not allowed by ruleset", user, rep.rep, err)
			}
		}
	})

	t.Run("curl http connect", func(t *testing.T) {
		r := runCurl(ctx, t, "--max-time", "60", "-p", "-x", "http://"+d.Client.HTTPAddr().String(), "-w", "%{http_connect}", url)
		// 56: CURLE_RECV_ERROR, how curl reports a CONNECT that was
		// answered with an error status.
		if r.code != 56 || r.stdout != "403" {
			t.Fatalf("curl -p -x: %v, CONNECT status %q; want exit 56 and status 403", r, r.stdout)
		}
	})
}
