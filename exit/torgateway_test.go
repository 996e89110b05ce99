package exit

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// A valid v3 address (rend-spec-v3 §6 test vector) and spoilt forms.
const (
	gwOnion = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion"
)

func gwTarget(t *testing.T, host string, port uint16) cell.Target {
	t.Helper()
	tg, err := cell.NewTarget(host, port)
	if err != nil {
		t.Fatalf("target %q: %v", host, err)
	}
	return tg
}

func gwReq(t *testing.T, host string, port uint16) circuit.BeginRequest {
	return circuit.BeginRequest{Service: cell.ServiceTorGateway, Target: gwTarget(t, host, port)}
}

// Only well-formed v3 .onion targets reach the dial func; everything else
// is refused before tor is asked, with a sentinel the engine maps to END.
func TestTorGatewayRefusesBadTargets(t *testing.T) {
	t.Parallel()
	var dials int
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		dials++
		return nil, errors.New("unreachable")
	})
	if err != nil {
		t.Fatal(err)
	}
	// Flip one base32 character: the checksum no longer matches.
	badSum := "3" + gwOnion[1:]
	// Version byte 4 instead of 3: last character of the id.
	badVer := gwOnion[:55] + "e" + gwOnion[56:]
	for _, tc := range []struct {
		name string
		req  circuit.BeginRequest
		want error
	}{
		{"clearnet name", gwReq(t, "example.com", 80), circuit.ErrExitPolicy},
		{"ip", gwReq(t, "1.2.3.4", 80), circuit.ErrExitPolicy},
		{"checksum", gwReq(t, badSum, 80), onionaddr.ErrChecksum},
		{"version", gwReq(t, badVer, 80), onionaddr.ErrVersion},
		{"v2 length", gwReq(t, "expyuzz4wqqyqhjn.onion", 80), onionaddr.ErrLength},
		{"other service", circuit.BeginRequest{Service: cell.ServiceExit, Target: gwTarget(t, gwOnion, 80)}, circuit.ErrServiceNotOffered},
	} {
		_, err := g.Begin(context.Background(), tc.req)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.want)
		}
		if tc.want != circuit.ErrServiceNotOffered && !errors.Is(err, circuit.ErrExitPolicy) {
			t.Errorf("%s: err %v does not wrap ErrExitPolicy", tc.name, err)
		}
		if err != nil && strings.Contains(err.Error(), tc.req.Target.Host()) {
			t.Errorf("%s: error names the target: %v", tc.name, err)
		}
	}
	if dials != 0 {
		t.Fatalf("%d dials for refused targets", dials)
	}
}

// tor's SOCKS reply code comes back byte-exact as a *circuit.TorSocksError,
// which the engine turns into END tor-socks with that code.
func TestTorGatewaySocksCodes(t *testing.T) {
	t.Parallel()
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		// The port tells the fake which code tor "answers".
		return nil, &circuit.TorSocksError{Code: byte(port)}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, code := range []byte{0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0xF0, 0xF1, 0xF2, 0xF3, 0xF4, 0xF5, 0xF6, 0xF7} {
		_, err := g.Begin(context.Background(), gwReq(t, gwOnion, uint16(code)))
		var ts *circuit.TorSocksError
		if !errors.As(err, &ts) || ts.Code != code {
			t.Fatalf("code 0x%02x: err %v", code, err)
		}
		if end := circuit.EndFor(err); end != (cell.End{Reason: cell.EndTorSocks, SocksCode: code}) {
			t.Fatalf("code 0x%02x: END %+v", code, end)
		}
	}
	if g.Pending() != 0 {
		t.Fatalf("Pending = %d after all dials returned", g.Pending())
	}
}

// A connection tor opened is handed to the engine as it is: bytes pass both
// ways, and host and port reach the dial func unchanged.
func TestTorGatewayPipes(t *testing.T) {
	t.Parallel()
	type call struct {
		host string
		port uint16
	}
	calls := make(chan call, 1)
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		calls <- call{host, port}
		a, b := net.Pipe()
		go func() {
			defer b.Close()
			_, _ = io.Copy(b, b) // echo
		}()
		return a, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sub := "www." + gwOnion
	conn, err := g.Begin(context.Background(), gwReq(t, sub, 8333))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if c := <-calls; c.host != sub || c.port != 8333 {
		t.Fatalf("dial got %s:%d", c.host, c.port)
	}
	msg := []byte("ping through tor")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// A tor that is not bootstrapped, or whose SOCKS port is gone, refuses at
// once with ErrTorNotReady (END service-not-offered), never a hang.
func TestTorGatewayNotReady(t *testing.T) {
	t.Parallel()
	dialed := false
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		dialed = true
		return nil, nil
	}, WithGatewayReady(func() error { return errors.New("bootstrap 40%") }))
	if err != nil {
		t.Fatal(err)
	}
	_, err = g.Begin(context.Background(), gwReq(t, gwOnion, 80))
	if !errors.Is(err, ErrTorNotReady) || !errors.Is(err, circuit.ErrServiceNotOffered) || dialed {
		t.Fatalf("not bootstrapped: err %v, dialed %v", err, dialed)
	}
	g, err = NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = g.Begin(context.Background(), gwReq(t, gwOnion, 80)); !errors.Is(err, ErrTorNotReady) {
		t.Fatalf("SOCKS port closed: err %v", err)
	}
}

// Stats counts every BEGIN, and how each was answered: a refusal before
// tor (bad target), a not-ready refusal with no dial, and dials.
func TestTorGatewayStats(t *testing.T) {
	t.Parallel()
	ready := errors.New("bootstrap 40%")
	var dials int
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		dials++
		return nil, &circuit.TorSocksError{Code: 0xF0}
	}, WithGatewayReady(func() error { return ready }))
	if err != nil {
		t.Fatal(err)
	}
	if s := g.Stats(); s != (GatewayStats{}) {
		t.Fatalf("new gateway: %+v", s)
	}
	g.Begin(context.Background(), gwReq(t, "example.com", 80))
	g.Begin(context.Background(), gwReq(t, gwOnion, 80))
	ready = nil
	g.Begin(context.Background(), gwReq(t, gwOnion, 80))
	g.Begin(context.Background(), circuit.BeginRequest{Service: cell.ServiceExit, Target: gwTarget(t, gwOnion, 80)})
	want := GatewayStats{Begins: 3, Dials: 1, NotReady: 1, Refused: 1}
	if s := g.Stats(); s != want || dials != 1 {
		t.Fatalf("stats %+v (%d dials), want %+v", s, dials, want)
	}
}

// A dial that tor does not answer ends at the gateway's timeout with
// ErrTimeout.
func TestTorGatewayTimeout(t *testing.T) {
	t.Parallel()
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}, WithGatewayDialTimeout(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Begin(context.Background(), gwReq(t, gwOnion, 80)); !errors.Is(err, circuit.ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
}

// Dials in progress are capped per circuit (session cookie) and in all;
// a BEGIN beyond a cap is refused with ErrResourceLimit while the others
// wait, and the slots come back when dials return.
func TestTorGatewayCaps(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 16)
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, _ string) (net.Conn, error) {
		started <- struct{}{}
		<-release
		return nil, &circuit.TorSocksError{Code: 0xF0}
	}, WithGatewayLimits(2, 3))
	if err != nil {
		t.Fatal(err)
	}
	req := func(cookie byte) circuit.BeginRequest {
		r := gwReq(t, gwOnion, 80)
		r.Cookie[0] = cookie
		return r
	}
	var wg sync.WaitGroup
	begin := func(cookie byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = g.Begin(context.Background(), req(cookie))
		}()
		<-started
	}
	begin(1)
	begin(1)
	// Circuit 1 is at its cap; circuit 2 is not.
	if _, err := g.Begin(context.Background(), req(1)); !errors.Is(err, circuit.ErrResourceLimit) {
		t.Fatalf("third dial on one circuit: %v", err)
	}
	begin(2)
	// Now the gateway is at its total cap, and circuit 2 holds no more
	// than one dial fewer than circuit 1: no fair-share preemption.
	if _, err := g.Begin(context.Background(), req(2)); !errors.Is(err, circuit.ErrResourceLimit) {
		t.Fatalf("dial beyond the total cap: %v", err)
	}
	close(release)
	wg.Wait()
	if g.Pending() != 0 {
		t.Fatalf("Pending = %d", g.Pending())
	}
	for i := range 3 {
		if _, err := g.Begin(context.Background(), req(1)); !errors.Is(err, circuit.ErrTorSocks) {
			t.Fatalf("dial %d after release: %v", i, err)
		}
	}
}

func TestTorGatewayOptions(t *testing.T) {
	t.Parallel()
	dial := func(context.Context, string, uint16, string) (net.Conn, error) { return nil, nil }
	for _, opt := range []GatewayOption{WithGatewayReady(nil), WithGatewayDialTimeout(0), WithGatewayLimits(0, 1), WithGatewayLimits(1, 0), WithGatewayLogger(nil)} {
		if _, err := NewTorGateway(dial, opt); err == nil {
			t.Error("bad option accepted")
		}
	}
	if _, err := NewTorGateway(nil); err == nil {
		t.Error("nil dial accepted")
	}
}

// Streams from different circuits reach tor with different isolation
// keys (so they never share a Tor circuit), streams of one circuit with
// the same key, and the key does not carry the cookie.
func TestTorGatewayIsolation(t *testing.T) {
	t.Parallel()
	var keys []string
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, iso string) (net.Conn, error) {
		keys = append(keys, iso)
		return nil, &circuit.TorSocksError{Code: 0xF0}
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []byte{1, 1, 2} {
		r := gwReq(t, gwOnion, 80)
		r.Cookie[0] = c
		r.Cookie[7] = 0xAB
		g.Begin(context.Background(), r)
	}
	if len(keys) != 3 {
		t.Fatalf("%d dials, want 3", len(keys))
	}
	if keys[0] == "" || keys[0] != keys[1] || keys[0] == keys[2] {
		t.Fatalf("isolation keys %q: want equal for one circuit, different across circuits", keys)
	}
	for _, k := range keys {
		if len(k) == 0 || len(k) > 255 || strings.Contains(k, "01000000000000ab") {
			t.Fatalf("isolation key %q: empty, too long or carries the cookie", k)
		}
	}
}

// One client holding every dial slot with a few circuits (each at its
// per-circuit cap, dials tor never answers) does not deny the gateway to
// another circuit: the full gateway takes the oldest dial of the circuit
// holding the most (that stream gets END resource-limit) and starts the
// newcomer's. When the slots are shared fairly (one per circuit), a new
// circuit is refused and nobody is preempted.
func TestTorGatewayFairShare(t *testing.T) {
	t.Parallel()
	const perCircuit, total = 4, 8
	started := make(chan string, 4*total)
	g, err := NewTorGateway(func(ctx context.Context, host string, port uint16, iso string) (net.Conn, error) {
		started <- iso
		<-ctx.Done()
		return nil, ctx.Err()
	}, WithGatewayLimits(perCircuit, total))
	if err != nil {
		t.Fatal(err)
	}
	req := func(cookie byte) circuit.BeginRequest {
		r := gwReq(t, gwOnion, 80)
		r.Cookie[0] = cookie
		return r
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	results := make(chan error, 4*total)
	begin := func(cookie byte) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := g.Begin(ctx, req(cookie))
			results <- err
		}()
		<-started
	}
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The attacker: two circuits fill all 8 slots.
	for range perCircuit {
		begin(1)
		begin(2)
	}
	if p := g.Pending(); p != total {
		t.Fatalf("Pending = %d, want %d", p, total)
	}
	// An honest circuit still gets a dial.
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := g.Begin(ctx, req(3))
		results <- err
	}()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	select {
	case iso := <-started:
		if iso != isolationKey(req(3).Cookie) {
			t.Fatalf("the dial started is not the honest circuit's")
		}
	case err := <-results:
		t.Fatalf("honest circuit refused while one client holds every slot: %v", err)
	case <-deadline.C:
		t.Fatal("honest circuit's dial never started")
	}
	// The preempted attacker stream is answered END resource-limit.
	select {
	case err := <-results:
		if !errors.Is(err, circuit.ErrResourceLimit) {
			t.Fatalf("preempted dial: %v, want ErrResourceLimit", err)
		}
	case <-deadline.C:
		t.Fatal("no attacker dial was given up")
	}
	if s := g.Stats(); s.Preempted != 1 || s.Pending != total {
		t.Fatalf("stats %+v, want 1 preempted, %d pending", s, total)
	}

	// Fair shares: 8 circuits with one dial each. A ninth is refused
	// and nobody loses a dial.
	cancel()
	wg.Wait()
	for len(results) > 0 {
		<-results
	}
	if p := g.Pending(); p != 0 {
		t.Fatalf("Pending = %d after all dials ended", p)
	}
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	for c := range byte(total) {
		begin(10 + c)
	}
	if _, err := g.Begin(ctx, req(99)); !errors.Is(err, circuit.ErrResourceLimit) {
		t.Fatalf("ninth circuit with every circuit at one dial: %v", err)
	}
	if s := g.Stats(); s.Preempted != 1 || s.Pending != total {
		t.Fatalf("stats %+v after a fair-share refusal", s)
	}
}
