package pool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
)

var errNoPath = errors.New("test: no path for port")

// byPort returns a Select that answers each port with the first path whose
// exit accepts it, and counts its calls.
func byPort(calls *atomic.Int32, paths ...Path) selectFunc {
	return func(ctx context.Context, port uint16, _ []peer.ID) (Path, error) {
		if calls != nil {
			calls.Add(1)
		}
		for _, p := range paths {
			if p.accepts(port) {
				return p, nil
			}
		}
		return Path{}, errNoPath
	}
}

func lastHop(c *circuit.Circuit) peer.ID {
	p := c.Path()
	return p[len(p)-1].Peer
}

// A stream goes only on a circuit whose exit accepts its port: a circuit
// built for 443 through an exit that refuses 8333 is not reused for 8333,
// while one whose exit accepts 443 too serves both. Keys never share.
func TestPerPort(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 4)
	ctx := testCtx(t)
	var calls atomic.Int32
	only443 := tn.path([]uint16{443}, 1, 2)
	both := tn.path([]uint16{443, 8333}, 1, 3)
	p := newPool(t, tn.config(newClock(), byPort(&calls, only443, both)))
	key := Key{"alice", "pw"}

	c443, err := p.Get(ctx, key, 443)
	if err != nil {
		t.Fatal(err)
	}
	if lastHop(c443) != tn.id(2) {
		t.Fatalf("443 went through %v, want the 443-only exit", lastHop(c443))
	}
	c8333, err := p.Get(ctx, key, 8333)
	if err != nil {
		t.Fatal(err)
	}
	if c8333 == c443 {
		t.Fatal("a stream to 8333 reused the circuit whose exit accepts only 443")
	}
	if lastHop(c8333) != tn.id(3) {
		t.Fatalf("8333 went through %v, want the exit accepting 8333", lastHop(c8333))
	}
	// Both circuits of the key accept 443 now: no third build.
	again, err := p.Get(ctx, key, 443)
	if err != nil {
		t.Fatal(err)
	}
	if again != c443 && again != c8333 {
		t.Fatal("a third circuit for a port the key's circuits accept")
	}
	if got := p.Stats().OnDemand; got != 2 {
		t.Fatalf("on-demand builds = %d, want 2", got)
	}
	other, err := p.Get(ctx, Key{"bob", "pw"}, 8333)
	if err != nil {
		t.Fatal(err)
	}
	if other == c443 || other == c8333 {
		t.Fatal("two keys share a circuit")
	}
	if _, err := p.Get(ctx, key, 25); !errors.Is(err, errNoPath) {
		t.Fatalf("Get for a port no exit accepts = %v, want the Select error", err)
	}
	for _, info := range p.Snapshot() {
		if info.ID == c8333.ID() && info.Port != 8333 {
			t.Fatalf("snapshot port = %d, want 8333", info.Port)
		}
	}
}

// A circuit takes new streams for MaxDirtiness after its first use; then
// the key gets a new circuit and the dirty one is closed once its last
// stream ends. The zero Key is no exception.
func TestDirtiness(t *testing.T) {
	t.Parallel()
	for _, key := range []Key{{}, {"alice", "pw"}} {
		t.Run(fmt.Sprintf("key %q", key.Username), func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 3)
			ctx := testCtx(t)
			clk := newClock()
			p := newPool(t, tn.config(clk, byPort(nil, tn.path([]uint16{443}, 1, 2))))

			old, err := p.Get(ctx, key, 443)
			if err != nil {
				t.Fatal(err)
			}
			s := openStream(ctx, t, old)
			p.StreamOpened(old)
			clk.Advance(9 * time.Minute)
			if c, err := p.Get(ctx, key, 443); err != nil || c != old {
				t.Fatalf("Get 9m after first use = %v, %v; want the same circuit", c, err)
			}
			clk.Advance(time.Minute) // MaxDirtiness since the first use
			fresh, err := p.Get(ctx, key, 443)
			if err != nil {
				t.Fatal(err)
			}
			if fresh == old {
				t.Fatal("a dirty circuit took a new stream")
			}
			var dirty bool
			for _, info := range p.Snapshot() {
				if info.ID == old.ID() {
					dirty = info.Dirty && info.Streams == 1
				}
			}
			if !dirty {
				t.Fatalf("snapshot does not show the old circuit dirty with its stream: %+v", p.Snapshot())
			}
			p.sweep()
			if old.Err() != nil {
				t.Fatal("the sweep closed a dirty circuit that still carries a stream")
			}
			echoOnce(t, s)
			_ = s.Close()
			waitFor(ctx, t, "the dirty circuit to close", func() bool {
				p.sweep()
				return old.Err() != nil
			})
			if fresh.Err() != nil {
				t.Fatalf("the fresh circuit closed: %v", fresh.Err())
			}
		})
	}
}

// A key's circuit with no stream is closed after IdleClose; one carrying a
// stream is not, however old.
func TestIdleClose(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	clk := newClock()
	cfg := tn.config(clk, byPort(nil, tn.path([]uint16{443}, 1, 2)))
	cfg.MaxDirtiness = time.Hour
	p := newPool(t, cfg)
	idle, err := p.Get(ctx, Key{"idle", ""}, 443)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := p.Get(ctx, Key{"busy", ""}, 443)
	if err != nil {
		t.Fatal(err)
	}
	openStream(ctx, t, busy)
	clk.Advance(9 * time.Minute)
	p.sweep()
	if idle.Err() != nil {
		t.Fatal("closed before IdleClose")
	}
	clk.Advance(time.Minute)
	p.sweep()
	if idle.Err() == nil {
		t.Fatal("idle circuit survived IdleClose")
	}
	if busy.Err() != nil {
		t.Fatal("a circuit carrying a stream was closed as idle")
	}
	if got := p.Stats().Isolated; got != 1 {
		t.Fatalf("isolated = %d, want 1", got)
	}
}

// A torn-down circuit is replaced on the next Get.
func TestDeadReplaced(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	p := newPool(t, tn.config(newClock(), byPort(nil, tn.path([]uint16{443}, 1, 2))))
	c1, err := p.Get(ctx, Key{}, 443)
	if err != nil {
		t.Fatal(err)
	}
	_ = c1.Close()
	c2, err := p.Get(ctx, Key{}, 443)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 || c2.Err() != nil {
		t.Fatal("a dead circuit was handed out")
	}
	openStream(ctx, t, c2)
}

// A fresh key takes a pre-built circuit, with no build on its path, and the
// clean set refills. Ports are predicted from configuration or from use.
func TestPrebuilt(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		configured []uint16
		preemptive int
	}{
		{"configured port", []uint16{443}, 2},
		{"port learned from use", nil, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 4)
			ctx := testCtx(t)
			web := tn.path([]uint16{80, 443}, 1, 2)
			odd := tn.path([]uint16{9999}, 1, 3)
			cfg := tn.config(newClock(), byPort(nil, web, odd))
			cfg.Preemptive, cfg.PredictedPorts = tc.preemptive, tc.configured
			p := newPool(t, cfg)
			p.Start()
			if tc.configured == nil {
				if st := p.Stats(); st.Preemptive != 0 {
					t.Fatalf("pre-built with nothing predicted: %+v", st)
				}
				if _, err := p.Get(ctx, Key{"first", ""}, 443); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(ctx, t, "clean circuits", func() bool { return p.Stats().Clean == tc.preemptive })
			clean := map[uint64]bool{}
			for _, info := range p.Snapshot() {
				if info.Clean {
					clean[info.ID] = info.Isolation == "" && info.FirstUse.IsZero() && info.Port == 443
				}
			}
			before := p.Stats()

			c, err := p.Get(ctx, Key{"fresh", "x"}, 80)
			if err != nil {
				t.Fatal(err)
			}
			if !clean[c.ID()] {
				t.Fatalf("fresh key got circuit %d, not one of the clean ones %v", c.ID(), clean)
			}
			st := p.Stats()
			if st.Claims != before.Claims+1 || st.OnDemand != before.OnDemand {
				t.Fatalf("stats %+v after a claim; before %+v", st, before)
			}
			openStream(ctx, t, c)
			if again, err := p.Get(ctx, Key{"fresh", "x"}, 443); err != nil || again != c {
				t.Fatalf("second Get of the key = %v, %v; want its claimed circuit", again, err)
			}
			waitFor(ctx, t, "the clean set to refill", func() bool {
				st := p.Stats()
				return st.Clean == tc.preemptive && st.Preemptive == before.Preemptive+1
			})
			// No clean circuit's exit accepts 9999: built on demand.
			if _, err := p.Get(ctx, Key{"odd", ""}, 9999); err != nil {
				t.Fatal(err)
			}
			if st := p.Stats(); st.OnDemand != before.OnDemand+1 || st.Claims != before.Claims+1 {
				t.Fatalf("stats %+v; before %+v", st, before)
			}
		})
	}
}

// A build that fails at one hop blames that hop alone and retries without
// it; a Prepare failure retries and blames nobody. Hops of a circuit that
// carried a stream are reported good, once.
func TestBuildRetryAndBlame(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		badHop  int  // index in the first path of a hop with a wrong onion key; -1 none
		prepare bool // Prepare fails once
	}{
		{"first hop", 0, false},
		{"middle hop", 1, false},
		{"prepare", -1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 4)
			ctx := testCtx(t)
			good := tn.path([]uint16{443}, 1, 3)
			first := good
			var bad peer.ID
			if tc.badHop >= 0 {
				// Host 2 with somebody else's onion key: its handshake fails.
				wrong := tn.path(nil, 2).Hops[0]
				wrong.OnionKey = tn.keys[1].Public()
				bad = wrong.Peer
				first.Hops = slices.Insert(slices.Clone(good.Hops), tc.badHop, wrong)
			}
			var mu sync.Mutex
			var excludes [][]peer.ID
			sel := func(ctx context.Context, port uint16, exclude []peer.ID) (Path, error) {
				mu.Lock()
				defer mu.Unlock()
				excludes = append(excludes, slices.Clone(exclude))
				if bad != "" && !slices.Contains(exclude, bad) {
					return first, nil
				}
				return good, nil
			}
			rep := newReports()
			cfg := tn.config(newClock(), sel)
			cfg.Report = rep.report
			var prepared atomic.Int32
			if tc.prepare {
				cfg.Prepare = func(ctx context.Context, c *circuit.Circuit, p Path) error {
					if prepared.Add(1) == 1 {
						return errors.New("test: no money")
					}
					return nil
				}
			}
			p := newPool(t, cfg)
			c, err := p.Get(ctx, Key{}, 443)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			got := excludes
			mu.Unlock()
			want := [][]peer.ID{nil, nil}
			if bad != "" {
				want[1] = []peer.ID{bad}
			}
			if len(got) != 2 || !slices.Equal(got[0], want[0]) || !slices.Equal(got[1], want[1]) {
				t.Fatalf("Select excludes = %v, want %v", got, want)
			}
			ok, fail := rep.counts()
			if bad != "" && (len(fail) != 1 || fail[bad] != 1) {
				t.Fatalf("failures reported = %v, want one for the bad hop only", fail)
			}
			if bad == "" && len(fail) != 0 {
				t.Fatalf("failures reported = %v, want none", fail)
			}
			if len(ok) != 0 {
				t.Fatalf("successes reported before any stream: %v", ok)
			}
			openStream(ctx, t, c)
			p.StreamOpened(c)
			openStream(ctx, t, c)
			p.StreamOpened(c)
			ok, _ = rep.counts()
			if len(ok) != 2 || ok[tn.id(1)] != 1 || ok[tn.id(3)] != 1 {
				t.Fatalf("successes reported = %v, want each hop of the circuit once", ok)
			}
		})
	}
}

// Three failed attempts end the build with the last error; Select's error
// ends it at once.
func TestBuildGivesUp(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	var calls atomic.Int32
	sel := func(ctx context.Context, port uint16, exclude []peer.ID) (Path, error) {
		calls.Add(1)
		p := tn.path(nil, 1, 2)
		p.Hops[1].OnionKey = tn.keys[1].Public() // the exit's handshake fails
		return p, nil
	}
	p := newPool(t, tn.config(newClock(), sel))
	_, err := p.Get(ctx, Key{}, 443)
	var be *circuit.BuildError
	if !errors.As(err, &be) || be.Hop != 1 {
		t.Fatalf("Get = %v, want a BuildError at hop 2", err)
	}
	if calls.Load() != buildAttempts {
		t.Fatalf("Select called %d times, want %d", calls.Load(), buildAttempts)
	}
	if st := p.Stats(); st.Failed != 1 || st.Built != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// Concurrent Gets for one key and port share one build; the build keeps
// going while one of them gives up, and stops when the last one does.
func TestConcurrentGetsBuildOnce(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	gate := make(chan struct{})
	var calls atomic.Int32
	path := tn.path([]uint16{443}, 1, 2)
	sel := func(ctx context.Context, port uint16, _ []peer.ID) (Path, error) {
		calls.Add(1)
		if port != 443 {
			<-ctx.Done() // never answers for other ports
			return Path{}, ctx.Err()
		}
		select {
		case <-gate:
			return path, nil
		case <-ctx.Done():
			return Path{}, ctx.Err()
		}
	}
	p := newPool(t, tn.config(newClock(), sel))
	key := Key{"k", "v"}
	waiters := func() int {
		p.mu.Lock()
		defer p.mu.Unlock()
		if b := p.building[buildKey{key, 443}]; b != nil {
			return b.waiters
		}
		return 0
	}

	const n = 8
	quitter, quit := context.WithCancel(ctx)
	quitErr := make(chan error, 1)
	go func() {
		_, err := p.Get(quitter, key, 443)
		quitErr <- err
	}()
	waitFor(ctx, t, "the first Get to wait", func() bool { return waiters() == 1 })
	type res struct {
		c   *circuit.Circuit
		err error
	}
	results := make(chan res, n)
	for range n {
		go func() {
			c, err := p.Get(ctx, key, 443)
			results <- res{c, err}
		}()
	}
	waitFor(ctx, t, "every Get to wait", func() bool { return waiters() == n+1 })
	quit()
	if err := <-quitErr; !errors.Is(err, circuit.ErrTimeout) || !errors.Is(err, context.Canceled) {
		t.Fatalf("abandoned Get = %v, want ErrTimeout wrapping context.Canceled", err)
	}
	close(gate)
	var first *circuit.Circuit
	for range n {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if first == nil {
			first = r.c
		}
		if r.c != first {
			t.Fatal("concurrent Gets of one key got different circuits")
		}
	}
	if calls.Load() != 1 {
		t.Fatalf("Select called %d times, want 1", calls.Load())
	}
	if st := p.Stats(); st.OnDemand != 1 || st.Built != 1 {
		t.Fatalf("stats %+v, want one build", st)
	}

	// A build nobody waits for any more is cancelled.
	alone, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := p.Get(alone, Key{"alone", ""}, 80)
		done <- err
	}()
	waitFor(ctx, t, "the lone build to start", func() bool { return calls.Load() == 2 })
	stop()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Get = %v", err)
	}
	waitFor(ctx, t, "the abandoned build to stop", func() bool { return p.Stats().Failed == 1 })
}

// MaxIsolated closes the least recently used circuit without streams;
// a circuit carrying a stream is never cut.
func TestCapEviction(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	clk := newClock()
	cfg := tn.config(clk, byPort(nil, tn.path([]uint16{443}, 1, 2)))
	cfg.MaxIsolated = 2
	cfg.MaxDirtiness = time.Hour
	p := newPool(t, cfg)
	get := func(name string) *circuit.Circuit {
		t.Helper()
		clk.Advance(time.Minute)
		c, err := p.Get(ctx, Key{name, "pw"}, 443)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a := get("a")
	s := openStream(ctx, t, a)
	b := get("b")
	c := get("c")
	if b.Err() == nil {
		t.Fatal("the least recently used idle circuit survived the cap")
	}
	if a.Err() != nil {
		t.Fatal("the cap cut a circuit carrying a stream")
	}
	d := get("d")
	if c.Err() == nil || a.Err() != nil || d.Err() != nil {
		t.Fatalf("after a fourth key: a %v, c %v, d %v", a.Err(), c.Err(), d.Err())
	}
	echoOnce(t, s)
	if st := p.Stats(); st.Isolated != 2 {
		t.Fatalf("isolated = %d, want 2", st.Isolated)
	}
}

// Close cancels builds in flight (on demand and ahead), waits for them,
// closes every pooled circuit, and is safe twice; Get fails afterwards.
// TestMain checks that no goroutine is left.
func TestClose(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	path := tn.path([]uint16{443}, 1, 2)
	var stuck atomic.Int32
	sel := func(ctx context.Context, port uint16, _ []peer.ID) (Path, error) {
		if port == 443 {
			return path, nil
		}
		stuck.Add(1)
		<-ctx.Done() // never answers for other ports
		return Path{}, ctx.Err()
	}
	cfg := tn.config(newClock(), sel)
	cfg.Preemptive, cfg.PredictedPorts = 1, []uint16{8333}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Start()
	p.Start()
	c, err := p.Get(ctx, Key{}, 443)
	if err != nil {
		t.Fatal(err)
	}
	s := openStream(ctx, t, c)
	got := make(chan error, 1)
	go func() {
		_, err := p.Get(ctx, Key{}, 8333)
		got <- err
	}()
	waitFor(ctx, t, "a pre-build and a Get to hang", func() bool { return stuck.Load() == 2 })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; !errors.Is(err, ErrClosed) {
		t.Fatalf("Get in flight across Close = %v, want ErrClosed", err)
	}
	if c.Err() == nil {
		t.Fatal("a pooled circuit survived Close")
	}
	if _, err := s.Write([]byte("x")); !errors.Is(err, circuit.ErrClosed) {
		t.Fatalf("write on a stream after Close = %v, want circuit.ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p.Start()
	if _, err := p.Get(ctx, Key{}, 443); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
	if st := tn.engines[0].Stats(); st.ClientCircuits != 0 {
		t.Fatalf("client circuits after Close = %d", st.ClientCircuits)
	}
}

// The password of a key shows nowhere: not in Snapshot, its JSON, nor a
// printed Key.
func TestNoPasswordShown(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3)
	ctx := testCtx(t)
	p := newPool(t, tn.config(newClock(), byPort(nil, tn.path([]uint16{443}, 1, 2))))
	key := Key{"alice", "s3cret-pw"}
	c, err := p.Get(ctx, key, 443)
	if err != nil {
		t.Fatal(err)
	}
	snap := p.Snapshot()
	if len(snap) != 1 || snap[0].ID != c.ID() || snap[0].Isolation != "alice" || len(snap[0].Path) != 2 {
		t.Fatalf("snapshot = %+v", snap)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{string(b), fmt.Sprint(key), fmt.Sprintf("%v %+v %s %#v", key, key, key, key)} {
		if strings.Contains(s, "s3cret") {
			t.Fatalf("password shown in %s", s)
		}
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	sel := func(context.Context, uint16, []peer.ID) (Path, error) { return Path{}, nil }
	build := func(context.Context, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, nil }
	tests := []struct {
		name string
		cfg  Config
		bad  string // substring of the error; "" for valid
	}{
		{"defaults", Config{Select: sel, Build: build}, ""},
		{"no Select", Config{Build: build}, "Select"},
		{"no Build", Config{Select: sel}, "Build"},
		{"negative MaxIsolated", Config{Select: sel, Build: build, MaxIsolated: -1}, "MaxIsolated"},
		{"negative MaxDirtiness", Config{Select: sel, Build: build, MaxDirtiness: -1}, "MaxDirtiness"},
		{"port 0", Config{Select: sel, Build: build, PredictedPorts: []uint16{443, 0}}, "PredictedPorts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.cfg.withDefaults()
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got.MaxIsolated != 64 || got.MaxDirtiness != 10*time.Minute || got.IdleClose != 10*time.Minute ||
					got.Preemptive != 2 || got.BuildTimeout != 30*time.Second || got.MaxBuilds != 8 {
					t.Fatalf("defaults = %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("error = %v, want one naming %s", err, tc.bad)
			}
		})
	}
	neg, err := Config{Select: sel, Build: build, Preemptive: -1}.withDefaults()
	if err != nil || neg.Preemptive != 0 {
		t.Fatalf("Preemptive -1 = %d, %v; want pre-building off", neg.Preemptive, err)
	}
}

// A clean circuit nobody claims is replaced after cleanLifetime, and closed
// for good once no port is predicted any more.
func TestCleanRetired(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		configured []uint16
		replaced   bool
	}{
		{"configured port: replaced", []uint16{443}, true},
		{"learned port expires: closed", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 3)
			ctx := testCtx(t)
			clk := newClock()
			cfg := tn.config(clk, byPort(nil, tn.path([]uint16{443}, 1, 2)))
			cfg.Preemptive, cfg.PredictedPorts = 1, tc.configured
			p := newPool(t, cfg)
			p.Start()
			if tc.configured == nil {
				if _, err := p.Get(ctx, Key{}, 443); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(ctx, t, "a clean circuit", func() bool { return p.Stats().Clean == 1 })
			var old uint64
			for _, info := range p.Snapshot() {
				if info.Clean {
					old = info.ID
				}
			}
			clk.Advance(cleanLifetime)
			p.sweep()
			for _, info := range p.Snapshot() {
				if info.ID == old {
					t.Fatal("a clean circuit outlived cleanLifetime")
				}
			}
			if !tc.replaced {
				if st := p.Stats(); st.Clean != 0 || st.Preemptive != 1 || st.Building != 0 {
					t.Fatalf("pre-built with nothing predicted: %+v", st)
				}
				return
			}
			waitFor(ctx, t, "a new clean circuit", func() bool {
				st := p.Stats()
				return st.Clean == 1 && st.Preemptive == 2
			})
		})
	}
}

// Ports are predicted for predictWindow after their last use, at most
// maxPredictedPorts of them, most recent first, configured ones last.
func TestPredictedPorts(t *testing.T) {
	t.Parallel()
	clk := newClock()
	p, err := New(Config{
		Select:         func(context.Context, uint16, []peer.ID) (Path, error) { return Path{}, errNoPath },
		Build:          func(context.Context, []circuit.HopInfo) (*circuit.Circuit, error) { return nil, errNoPath },
		PredictedPorts: []uint16{8333, 9735},
		Now:            clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.notePortLocked(443, clk.Now()) || p.notePortLocked(443, clk.Now()) {
		t.Fatal("notePortLocked: a new port is new once")
	}
	if p.notePortLocked(8333, clk.Now()) {
		t.Fatal("a configured port is never new")
	}
	clk.Advance(time.Minute)
	p.notePortLocked(80, clk.Now())
	if got, want := p.predictedLocked(clk.Now()), []uint16{80, 443, 8333, 9735}; !slices.Equal(got, want) {
		t.Fatalf("predicted = %v, want %v", got, want)
	}
	clk.Advance(predictWindow - time.Minute)
	if got, want := p.predictedLocked(clk.Now()), []uint16{80, 8333, 9735}; !slices.Equal(got, want) {
		t.Fatalf("an hour later: predicted = %v, want %v", got, want)
	}
	if !p.notePortLocked(443, clk.Now()) {
		t.Fatal("an expired port is new again")
	}
	for i := range 2 * maxPredictedPorts {
		clk.Advance(time.Second)
		p.notePortLocked(uint16(10000+i), clk.Now())
	}
	got := p.predictedLocked(clk.Now())
	if len(got) != maxPredictedPorts+2 || got[0] != 10000+2*maxPredictedPorts-1 || slices.Contains(got, 80) ||
		!slices.Equal(got[maxPredictedPorts:], []uint16{8333, 9735}) {
		t.Fatalf("predicted = %v, want the %d most recent ports, then 8333 and 9735", got, maxPredictedPorts)
	}
}

// A pooled circuit that a hop tears down because it lost the next hop
// blames that next hop (Report(hop, false)) when the pool finds it dead;
// one closed on this side, or finished by its exit, blames nobody.
func TestDeadCircuitBlamesHop(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 5)
	ctx := testCtx(t)
	var mu sync.Mutex
	var blamed []peer.ID
	var builds atomic.Int32
	// Builds go through 1, 2, 3 until 3 is gone, then through 1, 2, 4, so
	// that no failed build blames 3.
	sel := func(ctx context.Context, port uint16, exclude []peer.ID) (Path, error) {
		if builds.Add(1) <= 2 {
			return tn.path([]uint16{443}, 1, 2, 3), nil
		}
		return tn.path([]uint16{443}, 1, 2, 4), nil
	}
	cfg := tn.config(newClock(), sel)
	cfg.Report = func(p peer.ID, ok bool) {
		if !ok {
			mu.Lock()
			blamed = append(blamed, p)
			mu.Unlock()
		}
	}
	p := newPool(t, cfg)
	c1, err := p.Get(ctx, Key{}, 443)
	if err != nil {
		t.Fatal(err)
	}
	_ = c1.Close()
	c2, err := p.Get(ctx, Key{}, 443)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c1 {
		t.Fatal("a dead circuit was handed out")
	}
	mu.Lock()
	if len(blamed) != 0 {
		t.Fatalf("a circuit closed here blamed %v", blamed)
	}
	mu.Unlock()
	// The exit's host goes away at once: hop 2 loses its link to it and
	// tells the client in a TEARDOWN (link closed, depth 2).
	_ = tn.hosts[3].Close()
	waitFor(ctx, t, "the circuit to die", func() bool { return c2.Err() != nil })
	var ce *circuit.CloseError
	if !errors.As(c2.Err(), &ce) || !ce.Remote || ce.Depth != 2 {
		t.Fatalf("circuit died with %v, want a TEARDOWN from hop 2", c2.Err())
	}
	// The next Get finds it dead and builds through 4.
	c3, err := p.Get(ctx, Key{}, 443)
	if err != nil {
		t.Fatal(err)
	}
	openStream(ctx, t, c3)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(blamed, []peer.ID{tn.id(3)}) {
		t.Fatalf("blamed %v, want the exit %v alone", blamed, tn.id(3))
	}
}

func TestBlamedHop(t *testing.T) {
	t.Parallel()
	path := []circuit.HopInfo{{Peer: "a"}, {Peer: "b"}, {Peer: "c"}}
	for _, tc := range []struct {
		err  error
		want peer.ID
	}{
		{&circuit.CloseError{Reason: cell.ReasonResource, Remote: true, Depth: 2}, "b"},
		{&circuit.CloseError{Reason: cell.ReasonTimeout, Remote: true, Depth: 1}, "a"},
		{&circuit.CloseError{Reason: cell.ReasonLinkClosed, Remote: true, Depth: 1}, "b"},
		{&circuit.CloseError{Reason: cell.ReasonConnectFailed, Remote: true, Depth: 2}, "c"},
		{&circuit.CloseError{Reason: cell.ReasonLinkClosed, Remote: true, Depth: 3}, ""},
		{&circuit.CloseError{Reason: cell.ReasonFinished, Remote: true, Depth: 3}, ""},
		{&circuit.CloseError{Reason: cell.ReasonPayment, Remote: true, Depth: 2}, ""},
		{&circuit.CloseError{Reason: cell.ReasonResource, Remote: false, Depth: 2}, ""},
		{&circuit.CloseError{Reason: cell.ReasonResource, Remote: true, Depth: 0}, ""},
		{&circuit.CloseError{Reason: cell.ReasonResource, Remote: true, Depth: 4}, ""},
		{fmt.Errorf("wrapped: %w", &circuit.CloseError{Reason: cell.ReasonProtocol, Remote: true, Depth: 3}), "c"},
		{errors.New("other"), ""},
	} {
		got, ok := blamedHop(tc.err, path)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("blamedHop(%v) = %q, %v; want %q", tc.err, got, ok, tc.want)
		}
	}
}
