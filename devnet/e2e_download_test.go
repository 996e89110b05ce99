package devnet

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// testDownload50MiB fetches 50 MiB from the demo web server with curl
// through three hops, once over SOCKS5 (name resolved by the exit) and once
// over HTTP CONNECT, and compares checksums with the bytes the server
// generates.
func testDownload50MiB(t *testing.T, d *Devnet) {
	const size = 50 << 20
	want := demoSum(t, size)
	url := fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, size)
	cases := []struct {
		name, user string
		proxy      []string
	}{
		{"socks5-hostname", "dl-socks", []string{"--socks5-hostname", d.Client.SOCKSAddr().String()}},
		{"http-connect", "dl-http", []string{"-p", "-x", "http://" + d.Client.HTTPAddr().String()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()
			out := tempFile(t, "bytes")
			args := append(tc.proxy, "--proxy-user", tc.user+":pw", "--max-time", "170",
				"-o", out, "-w", "%{http_code} %{size_download} %{speed_download}", url)
			r := mustCurl(ctx, t, args...)
			f := strings.Fields(r.stdout)
			if len(f) != 3 || f[0] != "200" {
				t.Fatalf("curl -w reported %q, want status 200", r.stdout)
			}
			got, n := fileSum(t, out)
			if n != size || got != want {
				t.Fatalf("downloaded %d bytes with sha256 %x, want %d bytes with sha256 %x", n, got, size, want)
			}
			t.Logf("%s: %s bytes at %s bytes/s", tc.name, f[1], f[2])

			// The bytes came over a 3-hop circuit of distinct devnet nodes
			// ending at an exit.
			c, ok := circuitFor(d.Client, tc.user)
			if !ok {
				t.Fatalf("no circuit for isolation %q in %+v", tc.user, d.Client.Circuits())
			}
			checkPath(t, d, c, 3)
		})
	}
}

// checkPath asserts c has hops distinct devnet nodes, none of them the
// client, and ends at an exit.
func checkPath(t *testing.T, d *Devnet, c node.CircuitInfo, hops int) {
	t.Helper()
	if len(c.Path) != hops {
		t.Fatalf("circuit %d has path %v, want %d hops", c.ID, c.Path, hops)
	}
	seen := map[string]bool{}
	for i, id := range c.Path {
		n := d.Node(id)
		switch {
		case n == nil:
			t.Fatalf("circuit %d hop %d is %s, not a devnet node", c.ID, i, id)
		case n == d.Client:
			t.Fatalf("circuit %d hop %d is the client itself", c.ID, i)
		case seen[id]:
			t.Fatalf("circuit %d uses %s twice: %v", c.ID, id, c.Path)
		}
		seen[id] = true
	}
	if last := d.Node(c.Path[hops-1]); !last.Config().Has(node.RoleExit) {
		t.Fatalf("circuit %d ends at %s with roles %v, not an exit", c.ID, c.Path[hops-1], last.Config().Roles)
	}
}

// testNameResolvedAtExit fetches the demo page by the name "localhost" over
// SOCKS5 with remote resolution: the exit resolves it (devnet exits allow
// loopback), the client never does.
func testNameResolvedAtExit(t *testing.T, d *Devnet) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, port := hostPort(t, d.WebAddr)
	r := mustCurl(ctx, t, "--max-time", "50", "--socks5-hostname", d.Client.SOCKSAddr().String(),
		"--proxy-user", "by-name:1", fmt.Sprintf("http://localhost:%d/", port))
	if !strings.HasPrefix(r.stdout, "Hello from the co-infuse devnet") {
		t.Fatalf("page for localhost: %q", r.stdout)
	}
}
