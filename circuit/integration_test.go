package circuit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"golang.org/x/sync/errgroup"
)

// source returns a server handler that sends n deterministic bytes and
// closes.
func source(n int64) func(net.Conn) {
	return func(c net.Conn) {
		_, _ = io.CopyN(c, newPattern(), n)
	}
}

// newPattern returns a deterministic, non-compressible byte stream.
func newPattern() io.Reader {
	var seed [32]byte
	return rand.NewChaCha8(seed)
}

func patternSum(n int64) [32]byte {
	h := sha256.New()
	_, _ = io.CopyN(h, newPattern(), n)
	return [32]byte(h.Sum(nil))
}

func TestBulk50MiB(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("bulk transfer")
	}
	const n = 50 << 20
	tn := newTestNet(t, 4, nil)
	srv := newTCPServer(t, source(n))
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := sha256.New()
	got, err := io.Copy(h, s)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", got, err)
	}
	if got != n {
		t.Fatalf("got %d bytes, want %d", got, n)
	}
	if want := patternSum(n); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("sha256 mismatch")
	}
}

func TestEchoBothWays(t *testing.T) {
	t.Parallel()
	const n = 4 << 20
	tn := newTestNet(t, 4, nil)
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var g errgroup.Group
	g.Go(func() error {
		_, err := io.CopyN(s, newPattern(), n)
		return err
	})
	h := sha256.New()
	if _, err := io.CopyN(h, s, n); err != nil {
		t.Fatal(err)
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	if want := patternSum(n); !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("sha256 mismatch")
	}
}

// A stream whose reader never reads must not stall the others, and what
// it buffers is bounded by the stream window (§5.2).
func TestSlowReaderDoesNotStall(t *testing.T) {
	t.Parallel()
	const n = 6 << 20 // more than a stream window
	const streams = 8
	tn := newTestNet(t, 4, nil)
	srv := newTCPServer(t, source(n))
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	slow, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	want := patternSum(n)
	g, gctx := errgroup.WithContext(ctx)
	for i := range streams - 1 {
		g.Go(func() error {
			s, err := c.Dial(gctx, cell.ServiceExit, srv.addr())
			if err != nil {
				return err
			}
			defer s.Close()
			h := sha256.New()
			if _, err := io.Copy(h, s); err != nil {
				return fmt.Errorf("stream %d: %w", i, err)
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				return fmt.Errorf("stream %d: sha256 mismatch", i)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	// The slow stream has filled its window and stopped there.
	limit := streamWindow * cell.MaxData(3)
	waitFor(ctx, t, "slow stream window to fill", func() bool {
		slow.mu.Lock()
		defer slow.mu.Unlock()
		return slow.recvWin == 0
	})
	slow.mu.Lock()
	buffered := 0
	for _, ch := range slow.chunks {
		buffered += ch.end - ch.off
	}
	slow.mu.Unlock()
	if buffered > limit {
		t.Fatalf("slow stream buffers %d bytes, window allows %d", buffered, limit)
	}
	// And it still delivers everything once read.
	h := sha256.New()
	if _, err := io.Copy(h, slow); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatal("slow stream sha256 mismatch")
	}
}

func TestDestroyPropagation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		kill func(tn *testNet)
	}{
		{"engine close", func(tn *testNet) { _ = tn.engines[2].Close() }},
		{"host close", func(tn *testNet) { _ = tn.hosts[2].Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tn := newTestNet(t, 4, nil)
			srv := newTCPServer(t, source(1<<40))
			ctx := testCtx(t)
			c := tn.build(ctx, 1, 2, 3)
			s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if _, err := io.CopyN(io.Discard, s, 1<<20); err != nil {
				t.Fatal(err)
			}
			tc.kill(tn)
			_, err = io.Copy(io.Discard, s)
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("read error = %v, want ErrClosed", err)
			}
			<-c.Done()
			if !errors.Is(c.Err(), ErrClosed) {
				t.Fatalf("circuit Err = %v", c.Err())
			}
			// Every engine lets go of the circuit.
			for _, i := range []int{0, 1, 3} {
				e := tn.engines[i]
				waitFor(ctx, t, "circuits to go", func() bool {
					st := e.Stats()
					return st.RelayCircuits == 0 && st.ClientCircuits == 0 && st.Streams == 0
				})
			}
		})
	}
}

func TestTamperedCellDestroys(t *testing.T) {
	t.Parallel()
	var begins atomic.Int32
	tn := newTestNet(t, 4, func(i int, cfg *Config) {
		cfg.Begin = func(ctx context.Context, req BeginRequest) (net.Conn, error) {
			begins.Add(1)
			return loopbackBegin(ctx, req)
		}
	})
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	flip := func(cl *cell.Cell, forward bool) bool {
		if forward {
			cl.Body()[100] ^= 1
		}
		return false
	}
	tn.engines[2].testTamper.Store(&flip)
	_, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if !errors.Is(err, ErrClosed) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("dial error = %v, want ErrClosed and ErrProtocol", err)
	}
	if got := tn.engines[3].authFail.Load(); got != 1 {
		t.Fatalf("last hop auth failures = %d, want 1", got)
	}
	if got := begins.Load(); got != 0 {
		t.Fatalf("tampered BEGIN reached the destination hook %d times", got)
	}
}

func TestReplayedCellRejected(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got bytes.Buffer
	tn := newTestNet(t, 4, nil)
	srv := newTCPServer(t, func(c net.Conn) {
		buf := make([]byte, 1024)
		for {
			n, err := c.Read(buf)
			mu.Lock()
			got.Write(buf[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	var once atomic.Bool
	dup := func(cl *cell.Cell, forward bool) bool {
		return forward && once.CompareAndSwap(false, true)
	}
	tn.engines[2].testTamper.Store(&dup)
	if _, err := s.Write([]byte("pay once")); err != nil {
		t.Fatal(err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrProtocol) {
		t.Fatalf("circuit Err = %v, want ErrProtocol", c.Err())
	}
	if got := tn.engines[3].authFail.Load(); got != 1 {
		t.Fatalf("last hop auth failures = %d, want 1", got)
	}
	waitFor(ctx, t, "exit stream to end", func() bool { return tn.engines[3].Stats().Streams == 0 })
	mu.Lock()
	defer mu.Unlock()
	if n := bytes.Count(got.Bytes(), []byte("pay once")); n > 1 {
		t.Fatalf("destination saw the data %d times", n)
	}
}

func TestWrongOnionKey(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 4, nil)
	ctx := testCtx(t)
	other, err := GenerateOnionKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []int{0, 1, 2} {
		t.Run(fmt.Sprint("hop", bad), func(t *testing.T) {
			path := tn.path(1, 2, 3)
			path[bad].OnionKey = other.Public()
			_, err := tn.engines[0].Build(ctx, path)
			if !errors.Is(err, ErrProtocol) || !errors.Is(err, ErrClosed) {
				t.Fatalf("build error = %v, want ErrProtocol and ErrClosed", err)
			}
		})
	}
	for _, i := range []int{1, 2, 3} {
		e := tn.engines[i]
		waitFor(ctx, t, "hops to go", func() bool { return e.Stats().RelayCircuits == 0 })
	}
}

func TestLimits(t *testing.T) {
	t.Parallel()
	t.Run("client streams", func(t *testing.T) {
		t.Parallel()
		tn := newTestNet(t, 2, func(i int, cfg *Config) { cfg.Limits.MaxStreamsPerCircuit = 2 })
		srv := newTCPServer(t, echo)
		ctx := testCtx(t)
		c := tn.build(ctx, 1)
		for range 2 {
			if _, err := c.Dial(ctx, cell.ServiceExit, srv.addr()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Dial(ctx, cell.ServiceExit, srv.addr()); !errors.Is(err, ErrResourceLimit) {
			t.Fatalf("third dial = %v, want ErrResourceLimit", err)
		}
	})
	t.Run("exit streams", func(t *testing.T) {
		t.Parallel()
		tn := newTestNet(t, 2, func(i int, cfg *Config) {
			if i == 1 {
				cfg.Limits.MaxStreamsPerCircuit = 2
			}
		})
		srv := newTCPServer(t, echo)
		ctx := testCtx(t)
		c := tn.build(ctx, 1)
		for range 2 {
			if _, err := c.Dial(ctx, cell.ServiceExit, srv.addr()); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Dial(ctx, cell.ServiceExit, srv.addr()); !errors.Is(err, ErrResourceLimit) {
			t.Fatalf("third dial = %v, want ErrResourceLimit", err)
		}
	})
	t.Run("circuits per peer", func(t *testing.T) {
		t.Parallel()
		tn := newTestNet(t, 3, func(i int, cfg *Config) { cfg.Limits.MaxCircuitsPerPeer = 2 })
		ctx := testCtx(t)
		tn.build(ctx, 1, 2)
		tn.build(ctx, 1, 2)
		_, err := tn.engines[0].Build(ctx, tn.path(1, 2))
		if !errors.Is(err, ErrResourceLimit) {
			t.Fatalf("third build = %v, want ErrResourceLimit", err)
		}
	})
}

func TestDialErrors(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct {
		name   string
		svc    cell.Service
		target string
		want   error
	}{
		{"refused", cell.ServiceExit, closed, ErrConnRefused},
		{"policy", cell.ServiceExit, "192.0.2.1:80", ErrExitPolicy},
		{"service", cell.ServiceMempool, "127.0.0.1:80", ErrServiceNotOffered},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Dial(ctx, tc.svc, mustTarget(t, tc.target))
			if !errors.Is(err, tc.want) {
				t.Fatalf("dial = %v, want %v", err, tc.want)
			}
		})
	}
	if n := c.NumStreams(); n != 0 {
		t.Fatalf("NumStreams = %d after failed dials", n)
	}
	if c.Err() != nil {
		t.Fatalf("failed dials broke the circuit: %v", c.Err())
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2)
	a, err := c.Resolve(ctx, "localhost")
	if err != nil || a.String() != "127.0.0.1" {
		t.Fatalf("Resolve = %v, %v", a, err)
	}
	if _, err := c.Resolve(ctx, "nope.invalid"); !errors.Is(err, ErrResolveFailed) {
		t.Fatalf("Resolve = %v, want ErrResolveFailed", err)
	}
	// RESOLVE carries the canonical host: the exit sees "localhost".
	if a, err := c.Resolve(ctx, "LocalHost."); err != nil || a.String() != "127.0.0.1" {
		t.Fatalf("Resolve(LocalHost.) = %v, %v", a, err)
	}
	for _, h := range []string{"", "a b", "[::1]", "x:80", "2130706433", "a..b"} {
		if _, err := c.Resolve(ctx, h); !errors.Is(err, ErrProtocol) || !errors.Is(err, cell.ErrBadHost) {
			t.Fatalf("Resolve(%q) = %v, want ErrProtocol and cell.ErrBadHost", h, err)
		}
	}
	if c.Err() != nil {
		t.Fatalf("refused hosts broke the circuit: %v", c.Err())
	}
}

func TestTopUpAndAccounting(t *testing.T) {
	t.Parallel()
	type session struct{ cells, closed atomic.Int32 }
	var sess [3]session
	tn := newTestNet(t, 3, func(i int, cfg *Config) {
		if i == 1 {
			cfg.TopUp = func(_ context.Context, cookie [cell.CookieLen]byte, p []byte) ([]byte, error) {
				return append(cookie[:], p...), nil
			}
		}
		cfg.Account = func([cell.CookieLen]byte, int) error {
			if sess[i].cells.Add(1) > 40 && i == 2 {
				return ErrPayment
			}
			return nil
		}
		cfg.SessionClosed = func([cell.CookieLen]byte) { sess[i].closed.Add(1) }
	})
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2)
	out, err := c.TopUp(ctx, 0, []byte("voucher"))
	if err != nil {
		t.Fatal(err)
	}
	ck := c.Cookie(0)
	if want := append(ck[:], "voucher"...); !bytes.Equal(out, want) {
		t.Fatalf("TopUp = %x, want %x", out, want)
	}
	if _, err := c.TopUp(ctx, 1, nil); !errors.Is(err, ErrPayment) {
		t.Fatalf("TopUp without hook = %v, want ErrPayment", err)
	}
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	// Hop 2 stops paying after 40 cells: the circuit dies with ErrPayment.
	_, err = io.Copy(s, newPattern())
	if !errors.Is(err, ErrClosed) {
		t.Fatalf("write error = %v, want ErrClosed", err)
	}
	<-c.Done()
	if !errors.Is(c.Err(), ErrPayment) {
		t.Fatalf("circuit Err = %v, want ErrPayment", c.Err())
	}
	for _, i := range []int{1, 2} {
		waitFor(ctx, t, "session close", func() bool { return sess[i].closed.Load() == 1 })
	}
}

// The client's per-hop byte counts are the hops' own: after an echo
// exchange (and a TOPUP to the middle hop) each hop's Account hook has
// been charged exactly HopBytes()[i].
func TestHopBytesMatchAccounting(t *testing.T) {
	t.Parallel()
	var charged [4]atomic.Int64
	tn := newTestNet(t, 4, func(i int, cfg *Config) {
		cfg.Account = func(_ [cell.CookieLen]byte, n int) error { charged[i].Add(int64(n)); return nil }
		cfg.TopUp = func(context.Context, [cell.CookieLen]byte, []byte) ([]byte, error) { return nil, nil }
	})
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	if _, err := c.TopUp(ctx, 1, []byte("v")); err != nil {
		t.Fatal(err)
	}
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("x"), 100_000)
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	s.Close()
	waitFor(ctx, t, "hops' charges to match the client's counts", func() bool {
		got := c.HopBytes()
		for i := range 3 {
			if uint64(charged[i+1].Load()) != got[i] {
				return false
			}
		}
		return true
	})
	got := c.HopBytes()
	if got[0] < got[1] || got[1] < got[2] || got[2] < uint64(2*len(msg)) {
		t.Errorf("HopBytes = %v: want guard ≥ middle ≥ exit ≥ 2×%d (echoed both ways)", got, len(msg))
	}
}
