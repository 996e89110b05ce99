package devnet

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/co-infuse/co-infuse/discovery"
	"github.com/co-infuse/co-infuse/exit"
	"github.com/co-infuse/co-infuse/internal/onionaddr"
	"github.com/co-infuse/co-infuse/node"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// TestE2ETorGatewayOnionOrder checks the client's order for a .onion — a
// co-infuse descriptor first, a Tor gateway only when none is found —
// against hostile nodes of the devnet (node.WithBeginHook on every last
// hop but the client) and the package's shared private Tor network. The
// gateway is exit1; what it was asked is read from its own counters
// (status relay.tor_gateway), not inferred from the client's error.
//
//	IntroFailsNoFallback  Y is published on both networks (control port,
//	                      dual publication) and a plain Tor client fetches
//	                      it, so a gateway could reach it. The client
//	                      fetches it over co-infuse (descriptor found, no
//	                      gateway BEGIN). Then every intro point refuses
//	                      introductions: the client's CONNECT gets 0xF2
//	                      (introduction failed), the intro points were
//	                      asked, and the gateway saw no BEGIN at all.
//	ForgedDescriptor      X is a Tor-only service. relay1 plays a hostile
//	                      HSDir: it announces X's index and serves Y's real
//	                      descriptor for it (validly signed, by Y's blinded
//	                      key, not X's). The client fetches it, logs it as
//	                      forged, ignores it (not found) and reaches X
//	                      through the gateway byte-exact, within curl's
//	                      deadline.
func TestE2ETorGatewayOnionOrder(t *testing.T) {
	skipShort(t)
	t.Parallel()
	tn, host := gatewayTor(t)
	h := &hostileHooks{plantOn: "relay1"}
	t.Cleanup(h.wg.Wait) // runs after the devnet's Close: cleanups run last first
	logs := &logTap{}
	d, gw := startGatewayDevnet(t, tn, Options{Relays: 5, Exits: 1, ControlListen: "127.0.0.1:0",
		NodeOptions: h.options, Logger: logs.logger()})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	socks := d.Client.SOCKSAddr().String()
	_, webPort := hostPort(t, d.WebAddr)

	// Y: a control-port service, published on co-infuse and on Tor.
	id, _ := rawAddOnion(ctx, t, d, int(webPort))
	y := id + ".onion"
	waitTorPublished(ctx, t, d.Client, y)

	t.Run("IntroFailsNoFallback", func(t *testing.T) {
		fetchOnion(ctx, t, host.SocksAddr().String(), y, 4096, "plain Tor client to Y")
		before := gatewayStats(t, gw)
		fetchOnion(ctx, t, socks, y, 4096, "co-infuse client to Y")
		if got := gatewayStats(t, gw); got.Begins != before.Begins {
			t.Fatalf("Y has a co-infuse descriptor, yet the gateway got %d BEGINs", got.Begins-before.Begins)
		}
		h.refuseIntro.Store(true)
		defer h.refuseIntro.Store(false)
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Minute)
		defer ccancel()
		conn, rep, err := socksConnect(cctx, socks, "intro-refused", "x", y, 80)
		if conn != nil {
			conn.Close()
		}
		if rep.rep != 0xF2 {
			t.Fatalf("CONNECT to Y with every intro point refusing: reply %#02x (%v), want 0xf2 (introduction failed)", rep.rep, err)
		}
		if h.refusedIntros.Load() == 0 {
			t.Fatal("no intro point was asked: the descriptor was not used")
		}
		if got := gatewayStats(t, gw); got.Begins != before.Begins || got.Dials != before.Dials {
			t.Fatalf("the client fell back to the gateway: %+v before, %+v after", before, got)
		}
		if _, ok := gatewayCircuit(d, "intro-refused"); ok {
			t.Fatal("a gateway circuit was built for a service whose descriptor was found")
		}
	})

	t.Run("ForgedDescriptor", func(t *testing.T) {
		x := torOnlyService(t, host, d)
		pub, err := onionaddr.Parse(x)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		period := rendezvous.PeriodOf(now, rendezvous.DefaultPeriodLen)
		// Y's descriptor for this period (a service uploads the next
		// period's too).
		var forged []byte
		h.mu.Lock()
		for _, raw := range h.uploaded {
			if o, err := rendezvous.ParseOuter(raw); err == nil && o.Period == period {
				forged = raw
			}
		}
		h.mu.Unlock()
		if forged == nil {
			t.Fatal("no HSDir saw Y's descriptor upload for this period")
		}
		blinded, err := rendezvous.BlindPublic(pub, period, rendezvous.DefaultPeriodLen)
		if err != nil {
			t.Fatal(err)
		}
		idx := rendezvous.Index(blinded, period, rendezvous.DefaultPeriodLen)
		// The planted bytes are a real, validly signed descriptor (an
		// HSDir would store it), of another key than X's.
		if o, err := rendezvous.ParseOuter(forged); err != nil || o.Blinded.Equal(blinded) {
			t.Fatalf("planted descriptor: %v (signed by X's blinded key: %v)", err, err == nil && o.Blinded.Equal(blinded))
		}
		if _, err := rendezvous.DecodeDescriptor(forged, pub, period, rendezvous.DefaultPeriodLen, now); !errors.Is(err, rendezvous.ErrBadDescriptor) {
			t.Fatalf("the planted descriptor decodes as X's: %v", err)
		}
		h.plant(idx, forged)
		rogue := d.Nodes[0] // relay1
		if err := rogue.Discovery().ProvideIndex(ctx, idx); err != nil {
			t.Fatalf("relay1 announces X's index: %v", err)
		}
		waitFor(ctx, t, "the client to find relay1 as an HSDir of X", func() bool {
			fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
			defer fcancel()
			ads, _ := d.Client.Discovery().FindIndex(fctx, idx, 6)
			return slices.ContainsFunc(ads, func(a discovery.Advert) bool { return a.Peer == rogue.ID() })
		})
		before := gatewayStats(t, gw)
		const size = 64 << 10
		out := tempFile(t, "x")
		var r curlResult
		waitFor(ctx, t, "X through the gateway despite the forged descriptor", func() bool {
			r = runCurl(ctx, t, "--max-time", "90", "--socks5-hostname", socks, "--proxy-user", "forged:x", "-o", out, fmt.Sprintf("http://%s/bytes/%d", x, size))
			if r.code != 0 {
				t.Logf("curl to X: %v (retrying while Tor's descriptor spreads)", r)
			}
			return r.code == 0
		})
		if sum, n := fileSum(t, out); n != size || sum != demoSum(t, size) {
			t.Fatalf("X through the gateway: %d bytes, not the %d served byte-exact", n, size)
		}
		if h.served.Load() == 0 {
			t.Fatal("the client never fetched the planted descriptor")
		}
		if got := gatewayStats(t, gw); got.Dials <= before.Dials {
			t.Fatalf("the gateway dialled nothing for X: %+v before, %+v after", before, got)
		}
		if _, ok := gatewayCircuit(d, "forged"); !ok {
			t.Fatalf("no gateway circuit for X: %+v", d.Client.Circuits())
		}
		if !logs.has("node=client", "ignored as forged") {
			t.Fatal("the client did not log the forged descriptor")
		}
		if logs.has("node=client", x) {
			t.Fatal("the client logged X's address")
		}
	})
}

// TestE2ETorGatewayNotReady: a tor-gateway node (exit1, also the devnet's
// only exit) whose managed tor cannot bootstrap (its only directory
// authority is a closed loopback port). A client CONNECT to a .onion
// that has no co-infuse descriptor reaches the gateway, which refuses it
// at once (its not-ready counter counts it, it never dials tor), and the
// client answers SOCKS 0x01 (general failure) well within a deadline
// shorter than the gateway's 90 s dial timeout: no hang. The same node's
// exit keeps working: curl fetches 1 MiB byte-exact from a loopback web
// server over a circuit that ends at it. No private Tor network is needed.
func TestE2ETorGatewayNotReady(t *testing.T) {
	skipShort(t)
	t.Parallel()
	if _, err := exec.LookPath("tor"); err != nil {
		t.Skip("tor is not installed (apt-get install tor)")
	}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	d := startTestDevnet(t, Options{Relays: 3, Exits: 1, Configure: func(name string, cfg *node.Config) {
		if name == "exit1" {
			cfg.Roles = append(cfg.Roles, node.RoleTorGateway)
			cfg.Tor.Torrc = []string{"TestingTorNetwork 1",
				"DirAuthority dead orport=1 no-v2 v3ident=" + strings.Repeat("AB", 20) + " " + deadAddr + " " + strings.Repeat("CD", 20)}
		}
	}})
	var gw *node.Node
	for _, n := range d.Nodes {
		if c := n.Config(); c.Has(node.RoleTorGateway) && c.Has(node.RoleExit) {
			gw = n
		}
	}
	if gw == nil {
		t.Fatal("no exit with the tor-gateway role")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	waitFor(ctx, t, "the gateway's tor to run", func() bool {
		st := gw.Status().Tor
		return st != nil && st.Running
	})
	if st := gw.Status().Tor; st.Bootstrap == 100 {
		t.Fatalf("the gateway's tor bootstrapped with a dead authority: %+v", st)
	}
	socks := d.Client.SOCKSAddr().String()
	k, err := rendezvous.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	before := gatewayStats(t, gw)
	// Shorter than the gateway's dial timeout: a gateway that waited on
	// its tor would run past it.
	cctx, ccancel := context.WithTimeout(ctx, exit.DefaultGatewayDialTimeout/2)
	conn, rep, err := socksConnect(cctx, socks, "notready", "x", k.Address(), 80)
	ccancel()
	if conn != nil {
		conn.Close()
	}
	if rep.rep != 0x01 {
		t.Fatalf("CONNECT to an onion through a gateway whose tor is not ready: reply %#02x (%v), want 0x01", rep.rep, err)
	}
	got := gatewayStats(t, gw)
	if got.NotReady <= before.NotReady || got.Dials != before.Dials || got.Pending != 0 {
		t.Fatalf("gateway counters %+v before, %+v after: want a not-ready refusal and no dial", before, got)
	}

	// The exit on the same node still carries traffic.
	const size = 1 << 20
	out := tempFile(t, "exit")
	r := mustCurl(ctx, t, "--max-time", "60", "--socks5-hostname", socks, "--proxy-user", "web:x", "-o", out, fmt.Sprintf("http://%s/bytes/%d", d.WebAddr, size))
	if sum, n := fileSum(t, out); n != size || sum != demoSum(t, size) {
		t.Fatalf("through the exit: %d bytes, want %d byte-exact (%v)", n, size, r)
	}
	if c, ok := circuitFor(d.Client, "web"); !ok || c.Path[len(c.Path)-1] != gw.ID().String() {
		t.Fatalf("the download's circuit does not end at the gateway node %s: %+v", gw.ID(), c)
	}
}

// gatewayStats is the tor-gateway node's counters from its status.
func gatewayStats(t *testing.T, gw *node.Node) exit.GatewayStats {
	t.Helper()
	st := gw.Status()
	if st.Relay == nil || st.Relay.TorGateway == nil {
		t.Fatalf("%s's status has no tor_gateway counters", gw.ID())
	}
	return *st.Relay.TorGateway
}

// hostileHooks makes the devnet's last hops misbehave on demand through
// node.WithBeginHook: intro points that refuse introductions, one HSDir
// (plantOn) that serves planted bytes for one index, and a record of the
// descriptors services uploaded. Its serving goroutines end with
// their streams (at the latest with the devnet); wg waits for them.
type hostileHooks struct {
	plantOn       string
	refuseIntro   atomic.Bool
	refusedIntros atomic.Int64
	served        atomic.Int64
	wg            sync.WaitGroup

	mu       sync.Mutex
	plantIdx [32]byte // guarded by mu
	planted  []byte   // guarded by mu; nil: nothing planted
	uploaded [][]byte // guarded by mu: the first maxUploads descriptors uploaded
}

const maxUploads = 64

var (
	targetIntroduce = mustTarget(rendezvous.TargetIntroduce)
	targetDescPut   = mustTarget(rendezvous.TargetDescPut)
	targetDescGet   = mustTarget(rendezvous.TargetDescGet)
)

func mustTarget(s string) cell.Target {
	t, err := cell.ParseTarget(s)
	if err != nil {
		panic(err)
	}
	return t
}

// options are the node options of the devnet node name: the hook on
// every node but the client.
func (h *hostileHooks) options(name string) []node.Option {
	if name == "client" {
		return nil
	}
	return []node.Option{node.WithBeginHook(func(next circuit.BeginFunc) circuit.BeginFunc {
		return func(ctx context.Context, req circuit.BeginRequest) (net.Conn, error) {
			if req.Service != cell.ServiceRendezvous {
				return next(ctx, req)
			}
			switch req.Target {
			case targetIntroduce:
				if h.refuseIntro.Load() {
					h.refusedIntros.Add(1)
					return nil, fmt.Errorf("hostile intro point: %w", circuit.ErrServiceNotOffered)
				}
			case targetDescPut:
				c, err := next(ctx, req)
				if err != nil {
					return nil, err
				}
				return &putTap{Conn: c, h: h}, nil
			case targetDescGet:
				if name == h.plantOn {
					return h.serveGet(next, req), nil
				}
			}
			return next(ctx, req)
		}
	})}
}

// plant makes plantOn serve raw for index idx.
func (h *hostileHooks) plant(idx [32]byte, raw []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.plantIdx, h.planted = idx, raw
}

// serveGet answers a descriptor fetch: the planted bytes for the planted
// index (HSDir protocol, PROTOCOL.md §7.3: status OK, 16-bit length,
// descriptor), anything else from the node's real HSDir.
func (h *hostileHooks) serveGet(next circuit.BeginFunc, req circuit.BeginRequest) net.Conn {
	ours, theirs := net.Pipe()
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		defer ours.Close()
		ours.SetDeadline(time.Now().Add(time.Minute))
		var idx [32]byte
		if _, err := io.ReadFull(ours, idx[:]); err != nil {
			return
		}
		h.mu.Lock()
		planted := h.planted
		match := planted != nil && idx == h.plantIdx
		h.mu.Unlock()
		if match {
			h.served.Add(1)
			out := binary.BigEndian.AppendUint16([]byte{0}, uint16(len(planted)))
			ours.Write(append(out, planted...))
			return
		}
		real, err := next(context.Background(), req)
		if err != nil {
			return
		}
		defer real.Close()
		real.SetDeadline(time.Now().Add(time.Minute))
		if _, err := real.Write(idx[:]); err == nil {
			io.Copy(ours, real)
		}
	}()
	return theirs
}

// putTap records the descriptor uploaded through it (16-bit length,
// descriptor) and passes every byte on.
type putTap struct {
	net.Conn
	h    *hostileHooks
	buf  []byte // the stream's first bytes until done; one writer
	done bool
}

func (p *putTap) Write(b []byte) (int, error) {
	if !p.done {
		p.buf = append(p.buf, b...)
		if len(p.buf) >= 2 {
			n := int(binary.BigEndian.Uint16(p.buf))
			if len(p.buf) >= 2+n {
				p.done = true
				p.h.mu.Lock()
				if len(p.h.uploaded) < maxUploads {
					p.h.uploaded = append(p.h.uploaded, append([]byte(nil), p.buf[2:2+n]...))
				}
				p.h.mu.Unlock()
			}
		}
	}
	return p.Conn.Write(b)
}

// logTap records the nodes' log lines at info level and above (with their
// attributes, "key=value" each) and passes every record on to E2E_LOG's
// logger when it is set.
type logTap struct {
	mu    sync.Mutex
	lines []string // guarded by mu; at most maxTapLines
}

const maxTapLines = 100_000

func (l *logTap) logger() *slog.Logger {
	var next slog.Handler
	if lv := os.Getenv("E2E_LOG"); lv != "" {
		next = node.NewLogger(os.Stderr, lv).Handler()
	}
	return slog.New(tapHandler{tap: l, next: next})
}

// has reports whether one recorded line contains every part.
func (l *logTap) has(parts ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range l.lines {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return true
		}
	}
	return false
}

type tapHandler struct {
	tap   *logTap
	next  slog.Handler
	attrs string
}

func (h tapHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next != nil && h.next.Enabled(ctx, l)
}

func (h tapHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelInfo {
		var b strings.Builder
		b.WriteString(h.attrs)
		b.WriteString(r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		h.tap.mu.Lock()
		if len(h.tap.lines) < maxTapLines {
			h.tap.lines = append(h.tap.lines, b.String())
		}
		h.tap.mu.Unlock()
	}
	if h.next != nil && h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h tapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		fmt.Fprintf(&b, "%s=%v ", a.Key, a.Value)
	}
	n := h
	n.attrs = b.String()
	if h.next != nil {
		n.next = h.next.WithAttrs(as)
	}
	return n
}

func (h tapHandler) WithGroup(g string) slog.Handler {
	n := h
	if h.next != nil {
		n.next = h.next.WithGroup(g)
	}
	return n
}
