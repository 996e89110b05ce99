package circuit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// BeginFunc opens the destination of one BEGIN for a service at the last
// hop. Its contract is Config.Begin's: the error wraps an errors.go
// sentinel (mapped to an END reason), and the engine closes the returned
// conn when the stream ends.
type BeginFunc func(ctx context.Context, req BeginRequest) (net.Conn, error)

// ServeFunc serves one stream itself, for destinations that answer
// requests rather than open a connection (the mint, mempool delivery). It
// owns conn until it returns and should close it; ctx ends when the Mux
// closes.
type ServeFunc func(ctx context.Context, req BeginRequest, conn net.Conn)

// Mux is the last hop's service registry (PROTOCOL.md §5 BEGIN service):
// each destination registers a handler for its cell.Service, and the
// engine's Config.Begin and Config.Resolve are the Mux's methods. A BEGIN
// for a service nobody registered is answered END service-not-offered.
//
// Handlers are registered while the node starts, before the engine takes
// streams; registering later is allowed and takes effect for later BEGINs.
type Mux struct {
	ctx    context.Context // canceled by Close; given to ServeFuncs
	cancel context.CancelFunc
	wg     sync.WaitGroup // ServeFunc goroutines

	mu sync.RWMutex
	// handlers, resolve, observe and closed are guarded by mu.
	handlers map[cell.Service]BeginFunc
	resolve  func(ctx context.Context, host string) (netip.Addr, error)
	observe  func(req BeginRequest)
	closed   bool
}

// ErrServiceTaken: a handler is already registered for the service.
var ErrServiceTaken = errors.New("service already registered")

// NewMux returns an empty Mux.
func NewMux() *Mux {
	ctx, cancel := context.WithCancel(context.Background())
	return &Mux{ctx: ctx, cancel: cancel, handlers: make(map[cell.Service]BeginFunc)}
}

// Handle registers f for svc. It fails for an unknown service, a nil f or
// a service already registered.
func (m *Mux) Handle(svc cell.Service, f BeginFunc) error {
	if !svc.Valid() {
		return fmt.Errorf("mux: %v: %w", svc, cell.ErrBadService)
	}
	if f == nil {
		return fmt.Errorf("mux: nil handler for %v", svc)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.handlers[svc]; ok {
		return fmt.Errorf("mux: %v: %w", svc, ErrServiceTaken)
	}
	m.handlers[svc] = f
	return nil
}

// HandleServe registers f for svc: a BEGIN that accept allows (nil allows
// all; its error is the END reason, before CONNECTED) gets one end of an
// in-memory pipe, answered CONNECTED at once, and f serves the other end on
// a goroutine the Mux owns (Close cancels ctx and waits for it).
func (m *Mux) HandleServe(svc cell.Service, accept func(BeginRequest) error, f ServeFunc) error {
	if f == nil {
		return fmt.Errorf("mux: nil handler for %v", svc)
	}
	return m.Handle(svc, func(_ context.Context, req BeginRequest) (net.Conn, error) {
		if accept != nil {
			if err := accept(req); err != nil {
				return nil, err
			}
		}
		m.mu.RLock()
		defer m.mu.RUnlock()
		if m.closed {
			return nil, fmt.Errorf("mux: %w", ErrClosed)
		}
		ours, theirs := net.Pipe()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			stop := context.AfterFunc(m.ctx, func() { ours.Close() })
			defer stop()
			f(m.ctx, req, ours)
		}()
		return theirs, nil
	})
}

// HandleResolve registers the RESOLVE handler (exits only). It fails if one
// is registered already.
func (m *Mux) HandleResolve(f func(ctx context.Context, host string) (netip.Addr, error)) error {
	if f == nil {
		return errors.New("mux: nil resolve handler")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.resolve != nil {
		return fmt.Errorf("mux: resolve: %w", ErrServiceTaken)
	}
	m.resolve = f
	return nil
}

// Observe sets a function told of every BEGIN before it is dispatched (the
// payment ledger uses it to attribute a session to a role). It must not
// block. Nil removes it.
func (m *Mux) Observe(f func(req BeginRequest)) {
	m.mu.Lock()
	m.observe = f
	m.mu.Unlock()
}

// Services lists the registered services in ascending order.
func (m *Mux) Services() []cell.Service {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]cell.Service, 0, len(m.handlers))
	for s := range m.handlers {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Begin is Config.Begin: it dispatches req to its service's handler, or
// fails with ErrServiceNotOffered.
func (m *Mux) Begin(ctx context.Context, req BeginRequest) (net.Conn, error) {
	m.mu.RLock()
	f, ok := m.handlers[req.Service]
	obs := m.observe
	closed := m.closed
	m.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("mux: %w", ErrClosed)
	}
	if !ok {
		return nil, fmt.Errorf("mux: %v: %w", req.Service, ErrServiceNotOffered)
	}
	if obs != nil {
		obs(req)
	}
	return f(ctx, req)
}

// Resolve is Config.Resolve: the registered resolver, or ErrResolveFailed
// when this hop resolves nothing.
func (m *Mux) Resolve(ctx context.Context, host string) (netip.Addr, error) {
	m.mu.RLock()
	f := m.resolve
	m.mu.RUnlock()
	if f == nil {
		return netip.Addr{}, fmt.Errorf("mux: %w", ErrResolveFailed)
	}
	return f(ctx, host)
}

// Close refuses later BEGINs, cancels the ctx of running ServeFuncs and
// waits for them. Safe to call more than once.
func (m *Mux) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	return nil
}
