package devnet

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// testErrorMapping checks that a failure at the far end reaches each kind
// of client as the matching error: a closed loopback port is refused at the
// exit's connect, which must come back as SOCKS reply 0x05 (curl: 97 with
// "(5)") and HTTP 502 on the CONNECT port.
func testErrorMapping(t *testing.T, d *Devnet) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()

	// A port that nothing listens on: taken from the kernel, then released.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	host, port := hostPort(t, l.Addr())

	if r := runCurl(ctx, t, "--max-time", "50", "--socks5-hostname", socks, "--proxy-user", "err:1", "http://"+closed+"/"); r.code != 97 || !strings.Contains(r.stderr, "(5)") {
		t.Errorf("curl over SOCKS to a closed port: %v; want exit 97 with reply (5), connection refused", r)
	}
	if _, rep, err := socksConnect(ctx, socks, "err", "1", host, port); err == nil || rep.rep != 0x05 {
		t.Errorf("SOCKS CONNECT to a closed port: reply %#02x, %v; want 0x05", rep.rep, err)
	}
	if r := runCurl(ctx, t, "--max-time", "50", "-p", "-x", "http://"+d.Client.HTTPAddr().String(), "--proxy-user", "err:1", "-w", "%{http_connect}", "http://"+closed+"/"); r.code != 56 || r.stdout != "502" {
		t.Errorf("curl over HTTP CONNECT to a closed port: %v, status %q; want exit 56 and 502", r, r.stdout)
	}
	// The refusals came from the exit over a working circuit, which stays.
	if c, ok := circuitFor(d.Client, "err"); !ok {
		t.Errorf("no circuit left for the pair after refusals: %+v", d.Client.Circuits())
	} else {
		checkPath(t, d, c, 3)
	}
}
