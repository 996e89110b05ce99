package circuit

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

func TestMuxDispatch(t *testing.T) {
	t.Parallel()
	m := NewMux()
	t.Cleanup(func() { m.Close() })
	var got []cell.Service
	m.Observe(func(req BeginRequest) { got = append(got, req.Service) })
	exitConn, _ := net.Pipe()
	t.Cleanup(func() { exitConn.Close() })
	if err := m.Handle(cell.ServiceExit, func(context.Context, BeginRequest) (net.Conn, error) { return exitConn, nil }); err != nil {
		t.Fatal(err)
	}
	if err := m.Handle(cell.ServiceExit, func(context.Context, BeginRequest) (net.Conn, error) { return nil, nil }); !errors.Is(err, ErrServiceTaken) {
		t.Fatalf("second Handle(exit) = %v, want ErrServiceTaken", err)
	}
	if err := m.Handle(cell.Service(200), func(context.Context, BeginRequest) (net.Conn, error) { return nil, nil }); !errors.Is(err, cell.ErrBadService) {
		t.Fatalf("Handle(unknown service) = %v, want ErrBadService", err)
	}
	if err := m.Handle(cell.ServiceMempool, nil); err == nil {
		t.Fatal("Handle(nil) succeeded")
	}

	c, err := m.Begin(context.Background(), BeginRequest{Service: cell.ServiceExit})
	if err != nil || c != exitConn {
		t.Fatalf("Begin(exit) = %v, %v; want the exit handler's conn", c, err)
	}
	// A service nobody registered: END service-not-offered, no crash.
	_, err = m.Begin(context.Background(), BeginRequest{Service: cell.ServiceRendezvous})
	if !errors.Is(err, ErrServiceNotOffered) || EndReasonFor(err) != cell.EndServiceNotOffered {
		t.Fatalf("Begin(unregistered) = %v (END %v), want ErrServiceNotOffered", err, EndReasonFor(err))
	}
	if !slices.Equal(got, []cell.Service{cell.ServiceExit}) {
		t.Errorf("observed %v, want only the dispatched exit BEGIN", got)
	}
	if s := m.Services(); !slices.Equal(s, []cell.Service{cell.ServiceExit}) {
		t.Errorf("Services() = %v", s)
	}
	if _, err := m.Resolve(context.Background(), "example.com"); !errors.Is(err, ErrResolveFailed) {
		t.Errorf("Resolve with no resolver = %v, want ErrResolveFailed", err)
	}
	want := netip.MustParseAddr("192.0.2.7")
	if err := m.HandleResolve(func(context.Context, string) (netip.Addr, error) { return want, nil }); err != nil {
		t.Fatal(err)
	}
	if a, err := m.Resolve(context.Background(), "example.com"); err != nil || a != want {
		t.Errorf("Resolve = %v, %v", a, err)
	}
}

// A served destination answers over the pipe, and Close stops a handler
// that a client keeps waiting.
func TestMuxServeAndClose(t *testing.T) {
	t.Parallel()
	m := NewMux()
	served := make(chan struct{})
	accept := func(req BeginRequest) error {
		if req.Target.Port() != 1 {
			return ErrServiceNotOffered
		}
		return nil
	}
	err := m.HandleServe(cell.ServiceMempool, accept, func(ctx context.Context, req BeginRequest, conn net.Conn) {
		defer conn.Close()
		conn.Write([]byte("ok"))
		close(served)
		<-ctx.Done() // a stuck handler: only Close frees it
	})
	if err != nil {
		t.Fatal(err)
	}
	one, err := cell.ParseTarget("mempool:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Begin(context.Background(), BeginRequest{Service: cell.ServiceMempool}); !errors.Is(err, ErrServiceNotOffered) {
		t.Fatalf("Begin refused by accept = %v, want ErrServiceNotOffered before any pipe", err)
	}
	c, err := m.Begin(context.Background(), BeginRequest{Service: cell.ServiceMempool, Target: one})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("read %q, %v", buf, err)
	}
	<-served
	m.Close() // must return: cancels the handler's ctx and waits
	if _, err := m.Begin(context.Background(), BeginRequest{Service: cell.ServiceMempool, Target: one}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Begin after Close = %v, want ErrClosed", err)
	}
	m.Close()
}

// Through a real circuit whose last hop dispatches with a Mux: a BEGIN for
// a service nobody registered gets END service-not-offered and the circuit
// lives on; the registered service still answers on the same circuit.
func TestMuxAtLastHop(t *testing.T) {
	t.Parallel()
	m := NewMux()
	t.Cleanup(func() { m.Close() })
	if err := m.Handle(cell.ServiceExit, loopbackBegin); err != nil {
		t.Fatal(err)
	}
	tn := newTestNet(t, 3, func(i int, cfg *Config) {
		if i == 2 {
			cfg.Begin, cfg.Resolve = m.Begin, m.Resolve
		}
	})
	srv := newTCPServer(t, echo)
	ctx := testCtx(t)
	c := tn.build(ctx, 1, 2)
	for _, svc := range []cell.Service{cell.ServiceMempool, cell.ServiceRendezvous, cell.ServiceMint} {
		if _, err := c.Dial(ctx, svc, srv.addr()); !errors.Is(err, ErrServiceNotOffered) {
			t.Fatalf("Dial(%v) = %v, want ErrServiceNotOffered", svc, err)
		}
	}
	if c.Err() != nil {
		t.Fatalf("circuit died after refused services: %v", c.Err())
	}
	s, err := c.Dial(ctx, cell.ServiceExit, srv.addr())
	if err != nil {
		t.Fatalf("Dial(exit) after refusals: %v", err)
	}
	s.Close()
}
