package circuit

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/circuit/cell"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Closing engines in the middle of transfers leaves nothing behind (the
// goroutine check in TestMain covers the rest) and Close/Start are safe
// to repeat.
func TestCloseWhileBusy(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 4, nil)
	srv := newTCPServer(t, source(1<<40))
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2, 3)
	var ss []*Stream
	for range 4 {
		s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(io.Discard, s, 64<<10); err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	if got := tn.engines[3].Stats().Streams; got != 4 {
		t.Fatalf("exit streams = %d, want 4", got)
	}
	for _, e := range tn.engines {
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := e.Start(); err != nil {
			t.Fatal(err)
		}
		if st := e.Stats(); st != (Stats{}) {
			t.Fatalf("stats after Close = %+v", st)
		}
	}
	for _, s := range ss {
		if _, err := io.Copy(io.Discard, s); !errors.Is(err, ErrClosed) {
			t.Fatalf("read after Close = %v, want ErrClosed", err)
		}
	}
	if _, err := tn.engines[0].Build(ctx, tn.path(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Build after Close = %v, want ErrClosed", err)
	}
}

func TestClientOnlyRefusesCreate(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 2, func(i int, cfg *Config) {
		if i == 1 {
			cfg.OnionKey = nil
		}
	})
	key, _ := GenerateOnionKey()
	p := tn.path(1)
	p[0].OnionKey = key.Public()
	_, err := tn.engines[0].Build(testCtx(t), p)
	if !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("build through client-only node = %v, want ErrResourceLimit", err)
	}
}

func TestNewRequiresHost(t *testing.T) {
	t.Parallel()
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without Host succeeded")
	}
}

// The sweeper destroys idle relayed circuits with reason timeout.
func TestIdleSweep(t *testing.T) {
	t.Parallel()
	tn := newTestNet(t, 3, nil)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2)
	// The first sweep sees the circuit active since the previous sweep;
	// an hour later it has been idle.
	tn.engines[2].sweepOnce(time.Now().Add(time.Hour))
	tn.engines[2].sweepOnce(time.Now().Add(2 * time.Hour))
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("idle circuit survived the sweep")
	}
	if !errors.Is(c.Err(), ErrTimeout) {
		t.Fatalf("circuit Err = %v, want ErrTimeout", c.Err())
	}
	waitFor(ctx, t, "relays to let go", func() bool {
		return tn.engines[1].Stats().RelayCircuits == 0 && tn.engines[2].Stats().RelayCircuits == 0
	})
}

// A client keeps every built circuit alive with DROP cells, with a quiet
// stream or with no stream at all (a pre-built circuit nobody claimed yet),
// so relays with a short idle timeout do not reap it.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		stream bool // open a quiet stream before waiting
	}{
		{"quiet stream", true},
		{"no stream", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const idle = time.Second
			var drops atomic.Int32
			tn := newTestNet(t, 3, func(i int, cfg *Config) {
				cfg.Limits.IdleTimeout = idle
				cfg.Limits.KeepAlive = idle / 10
				if i == 2 {
					cfg.Account = func([cell.CookieLen]byte, int) error { drops.Add(1); return nil }
				}
			})
			srv := newTCPServer(t, echo)
			ctx := testCtx(t)
			c := tn.build(ctx, 1, 2)
			var s *Stream
			if tc.stream {
				var err error
				if s, err = c.Dial(ctx, cell.ServiceExit, srv.addr()); err != nil {
					t.Fatal(err)
				}
				defer s.Close()
			}
			start := drops.Load()
			// Wait for enough keep-alives to span 2.5 idle timeouts.
			waitFor(ctx, t, "keep-alives", func() bool { return c.Err() != nil || drops.Load()-start >= 25 })
			if c.Err() != nil {
				t.Fatalf("quiet circuit was reaped: %v", c.Err())
			}
			if !tc.stream {
				var err error
				if s, err = c.Dial(ctx, cell.ServiceExit, srv.addr()); err != nil {
					t.Fatalf("dial on the kept circuit: %v", err)
				}
				defer s.Close()
			}
			if _, err := s.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, 4)
			if _, err := io.ReadFull(s, got); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// CREATEs waiting in Admit are capped: one more is refused at once.
func TestPendingCreatesCapped(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	tn := newTestNet(t, 2, func(i int, cfg *Config) {
		cfg.Limits.MaxPendingCreates = 1
		cfg.Admit = func(ctx context.Context, _ peer.ID, depth int) error {
			if depth != 1 {
				return ErrProtocol
			}
			entered <- struct{}{}
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ErrTimeout
			}
		}
	})
	ctx := testCtx(t)
	first := make(chan error, 1)
	go func() {
		c, err := tn.engines[0].Build(ctx, tn.path(1))
		if err == nil {
			_ = c.Close()
		}
		first <- err
	}()
	<-entered
	if _, err := tn.engines[0].Build(ctx, tn.path(1)); !errors.Is(err, ErrResourceLimit) {
		t.Fatalf("second build = %v, want ErrResourceLimit", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first build = %v", err)
	}
}
