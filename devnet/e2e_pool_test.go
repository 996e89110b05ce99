package devnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/node"
)

// TestE2ECircuitChoice checks how the client's pool picks circuits, with
// real curl through a devnet whose two exits accept one port each:
//   - PerPort: a stream to the second port after one to the first (no
//     credentials) reaches its target, on a circuit whose exit accepts it;
//   - Dirtiness: a stream opened after the dirtiness period goes on a new
//     circuit;
//   - Preemptive: a new credential pair is served by a pre-built circuit,
//     with no build on its critical path.
func TestE2ECircuitChoice(t *testing.T) {
	skipShort(t)
	t.Parallel()
	webA, portA := startDemoWeb(t)
	webB, portB := startDemoWeb(t)
	const dirtiness = 3 * time.Second
	d := startTestDevnet(t, Options{Relays: 3, Exits: 2, Configure: func(name string, cfg *node.Config) {
		switch name {
		case "exit1":
			cfg.Exit.Policy = []string{fmt.Sprintf("accept 127.0.0.1:%d", portA), "reject *:*"}
		case "exit2":
			cfg.Exit.Policy = []string{fmt.Sprintf("accept 127.0.0.1:%d", portB), "reject *:*"}
		case "client":
			cfg.Circuit.MaxDirtiness = dirtiness
		}
	}})
	exitFor := map[uint16]string{portA: d.Nodes[3].ID().String(), portB: d.Nodes[4].ID().String()}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()
	// fetch gets / from web through the client, with credentials user:1
	// unless user is "" (none: the zero isolation key).
	fetch := func(t *testing.T, user, web string) {
		t.Helper()
		args := []string{"--max-time", "60", "--socks5-hostname", socks}
		if user != "" {
			args = append(args, "--proxy-user", user+":1")
		}
		out := mustCurl(ctx, t, append(args, "http://"+web+"/")...)
		if !strings.Contains(out.stdout, "Hello from the co-infuse devnet") {
			t.Fatalf("fetch %s as %q: unexpected body %q", web, user, out.stdout)
		}
	}
	// anonymous lists the live circuits of the zero key built for port.
	anonymous := func(port uint16) []node.CircuitInfo {
		var out []node.CircuitInfo
		for _, c := range d.Client.Circuits() {
			if c.Isolation == "" && !c.Clean && c.Port == port {
				out = append(out, c)
			}
		}
		return out
	}

	t.Run("PerPort", func(t *testing.T) {
		fetch(t, "", webA)
		fetch(t, "", webB) // the exit of the first circuit refuses this port
		for _, port := range []uint16{portA, portB} {
			cs := anonymous(port)
			if len(cs) != 1 {
				t.Fatalf("port %d: %d circuits of the zero key, want 1: %+v", port, len(cs), d.Client.Circuits())
			}
			if exit := cs[0].Path[len(cs[0].Path)-1]; exit != exitFor[port] {
				t.Errorf("port %d went through exit %s, want %s (the only exit accepting it)", port, exit, exitFor[port])
			}
		}
	})

	t.Run("Dirtiness", func(t *testing.T) {
		first := anonymous(portA)
		if len(first) != 1 {
			t.Fatalf("want one circuit of the zero key for port %d, have %+v", portA, d.Client.Circuits())
		}
		old := first[0].ID
		// No sleep: wait for the pool to call the circuit dirty.
		waitFor(ctx, t, "the first circuit to turn dirty", func() bool {
			for _, c := range d.Client.Circuits() {
				if c.ID == old {
					return c.Dirty
				}
			}
			return true // closed: dirty and unused
		})
		fetch(t, "", webA)
		for _, c := range anonymous(portA) {
			if c.ID != old && !c.Dirty {
				return // a fresh circuit carried the new stream
			}
		}
		t.Fatalf("after the dirtiness period no fresh circuit carried the stream: %+v", d.Client.Circuits())
	})

	t.Run("Preemptive", func(t *testing.T) {
		// Port A has been used, so it is predicted: wait for a clean
		// circuit whose exit accepts it.
		var clean []uint64
		waitFor(ctx, t, "a pre-built circuit for the used port", func() bool {
			clean = clean[:0]
			for _, c := range d.Client.Circuits() {
				if c.Clean && c.Port == portA {
					clean = append(clean, c.ID)
				}
			}
			return len(clean) > 0
		})
		before := d.Client.PoolStats()
		fetch(t, "fresh-credentials", webA)
		after := d.Client.PoolStats()
		if after.Claims != before.Claims+1 || after.OnDemand != before.OnDemand {
			t.Fatalf("fresh credentials: claims %d→%d, on-demand builds %d→%d; want one claim and no build on the critical path",
				before.Claims, after.Claims, before.OnDemand, after.OnDemand)
		}
		c, ok := circuitFor(d.Client, "fresh-credentials")
		if !ok || !slices.Contains(clean, c.ID) {
			t.Fatalf("fresh credentials used circuit %+v (found %v), want one of the pre-built %v", c, ok, clean)
		}
		waitFor(ctx, t, "the clean set to refill", func() bool { return d.Client.PoolStats().Clean > 0 })
	})
}

// startDemoWeb serves DemoHandler on a kernel-chosen loopback port until
// the test ends.
func startDemoWeb(t *testing.T) (string, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: DemoHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	_, port := hostPort(t, ln.Addr())
	return ln.Addr().String(), port
}
