package devnet

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// testIsolation checks the client's circuit table against SOCKS credentials
// the way bitcoind -proxyrandomize and lnd tor.streamisolation use them: the
// same username/password pair reuses its circuit, another pair gets another.
func testIsolation(t *testing.T, d *Devnet) {
	socks := d.Client.SOCKSAddr().String()
	url := fmt.Sprintf("http://%s/", d.WebAddr)

	t.Run("curl", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		fetch := func(cred string) {
			t.Helper()
			r := mustCurl(ctx, t, "--max-time", "50", "--socks5-hostname", socks, "--proxy-user", cred, url)
			if r.stdout == "" {
				t.Fatalf("curl with %s: empty page", cred)
			}
		}
		must := func(user string) node.CircuitInfo {
			t.Helper()
			c, ok := circuitFor(d.Client, user)
			if !ok {
				t.Fatalf("no circuit for %q after its request; table: %+v", user, d.Client.Circuits())
			}
			return c
		}
		fetch("iso-a:1")
		a1 := must("iso-a")
		fetch("iso-a:1")
		a2 := must("iso-a")
		fetch("iso-b:2")
		b := must("iso-b")
		a3 := must("iso-a")
		if a1.ID != a2.ID || a2.ID != a3.ID {
			t.Fatalf("pair iso-a:1 moved between circuits %d, %d, %d", a1.ID, a2.ID, a3.ID)
		}
		if b.ID == a1.ID {
			t.Fatalf("pairs iso-a:1 and iso-b:2 share circuit %d", b.ID)
		}
		checkPath(t, d, a1, 3)
		checkPath(t, d, b, 3)
	})

	// HTTP CONNECT isolates on Proxy-Authorization the same way.
	t.Run("curl http connect", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		px := "http://" + d.Client.HTTPAddr().String()
		var ids []uint64
		for _, cred := range []string{"iso-h:1", "iso-h:1", "iso-i:2"} {
			mustCurl(ctx, t, "--max-time", "50", "-p", "-x", px, "--proxy-user", cred, url)
			user := cred[:len(cred)-2]
			c, ok := circuitFor(d.Client, user)
			if !ok {
				t.Fatalf("no circuit for %q after its CONNECT; table: %+v", user, d.Client.Circuits())
			}
			ids = append(ids, c.ID)
		}
		if ids[0] != ids[1] || ids[2] == ids[0] {
			t.Fatalf("circuits for iso-h:1, iso-h:1, iso-i:2 were %v; want the first two equal and the third different", ids)
		}
	})

	// Streams held open show on the circuit of their own pair, and a pair
	// differing only in the password is isolated too (Tor's
	// IsolateSOCKSAuth keys on both).
	t.Run("open streams", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		host, port := hostPort(t, d.WebAddr)
		open := []struct{ user, pass string }{
			{"iso-c", "1"}, {"iso-c", "1"}, {"iso-d", "1"}, {"iso-d", "2"},
		}
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for _, o := range open {
			c, _, err := socksConnect(ctx, socks, o.user, o.pass, host, port)
			if err != nil {
				t.Fatalf("SOCKS CONNECT as %s:%s: %v", o.user, o.pass, err)
			}
			conns = append(conns, c)
		}
		var streams map[string][]int // username -> streams per circuit
		err := poll(ctx, func() bool {
			streams = map[string][]int{}
			for _, c := range d.Client.Circuits() {
				streams[c.Isolation] = append(streams[c.Isolation], c.Streams)
			}
			c, dd := streams["iso-c"], streams["iso-d"]
			return len(c) == 1 && c[0] == 2 && len(dd) == 2 && dd[0] == 1 && dd[1] == 1
		})
		if err != nil {
			t.Fatalf("want iso-c on one circuit with 2 streams and iso-d on two circuits with 1 stream each; streams per circuit: %v (%v)", streams, err)
		}
		for _, c := range conns {
			c.Close()
		}
		waitFor(ctx, t, "closed streams to leave their circuits", func() bool {
			for _, c := range d.Client.Circuits() {
				if (c.Isolation == "iso-c" || c.Isolation == "iso-d") && c.Streams != 0 {
					return false
				}
			}
			return true
		})
	})
}
