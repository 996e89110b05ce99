package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// server is the listener and connection lifecycle both front ends share:
// an accept loop per Serve call, one goroutine per client connection, a cap
// on concurrent connections, and Shutdown that stops accepting, waits for
// connections to finish, then forces them closed.
type server struct {
	log      *slog.Logger
	maxConns int
	handle   func(ctx context.Context, c net.Conn) // runs once per accepted conn

	// ctx is the parent of every connection's context; cancel aborts
	// in-progress dials on forced shutdown.
	ctx    context.Context
	cancel context.CancelFunc

	mu        sync.Mutex
	closing   bool                      // guarded by mu; set once by Shutdown
	listeners map[net.Listener]struct{} // guarded by mu
	conns     map[net.Conn]struct{}     // guarded by mu; at most maxConns
	addr      net.Addr                  // guarded by mu; first listener's address

	// wg counts connection goroutines. Add happens under mu while closing
	// is false, so it never races Shutdown's Wait.
	wg sync.WaitGroup
}

func newServer(log *slog.Logger, maxConns int, handle func(context.Context, net.Conn)) *server {
	ctx, cancel := context.WithCancel(context.Background())
	return &server{
		log:       log,
		maxConns:  maxConns,
		handle:    handle,
		ctx:       ctx,
		cancel:    cancel,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
}

// serve accepts on l until l fails or the server shuts down; it closes l.
// It returns ErrServerClosed after Shutdown.
func (s *server) serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	if s.addr == nil {
		s.addr = l.Addr()
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		_ = l.Close()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosing() {
				return ErrServerClosed
			}
			if retryableAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Debug("accept failed; backing off", "err", err, "backoff", backoff)
				t := time.NewTimer(backoff)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
					return ErrServerClosed
				}
				continue
			}
			return err
		}
		backoff = 0
		s.start(c)
	}
}

// retryableAccept reports whether an Accept error is a passing shortage
// (too many open files and the like) rather than a dead listener.
func retryableAccept(err error) bool {
	type temporary interface{ Temporary() bool }
	var t temporary
	var ne net.Error
	return errors.As(err, &t) && t.Temporary() || errors.As(err, &ne) && ne.Timeout()
}

// start tracks c and runs the handler for it, or closes c at once when the
// server is full or closing.
func (s *server) start(c net.Conn) {
	s.mu.Lock()
	if s.closing || len(s.conns) >= s.maxConns {
		full := !s.closing
		s.mu.Unlock()
		if full {
			s.log.Debug("connection refused: at MaxConns", "max", s.maxConns)
		}
		_ = c.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
		s.handle(s.ctx, c)
	}()
}

func (s *server) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing
}

func (s *server) listenAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// shutdown closes the listeners, waits for connections to end until ctx is
// done, then cancels in-progress dials, closes the remaining connections and
// waits for their goroutines. It returns ctx.Err() if it had to force, nil
// otherwise; a second call waits the same way and returns nil once drained.
func (s *server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		_ = l.Close()
	}
	s.mu.Unlock()

	drained := make(chan struct{})
	go func() { // owned: ends when wg drains, which the force path below ensures
		s.wg.Wait()
		close(drained)
	}()
	select {
	case <-drained:
		s.cancel()
		return nil
	case <-ctx.Done():
	}
	s.cancel()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	<-drained
	return ctx.Err()
}
