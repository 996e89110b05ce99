package circuit

import (
	"errors"
	"io"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
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
