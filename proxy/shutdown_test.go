package proxy

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// TestShutdownForcesOpenTunnels: Shutdown stops accepting, and when its
// context ends it closes tunnels that are still open; Serve then returns
// ErrServerClosed and a second Shutdown is harmless.
func TestShutdownForcesOpenTunnels(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"socks", "http"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			f := newFakeNet(echoBackend(t))
			cfg := Config{Dial: f.dial, Resolve: f.resolve}
			var s interface {
				testServer
				Shutdown(context.Context) error
			}
			var err error
			if kind == "socks" {
				s, err = NewSOCKS(cfg)
			} else {
				s, err = NewHTTPConnect(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			l := listen(t)
			served := make(chan error, 1)
			go func() { served <- s.Serve(l) }()
			addr := l.Addr().String()

			c := dialRaw(t, addr)
			if kind == "socks" {
				c.send(5, 1, 0)
				c.expect(5, 0)
				c.send(socksDomain(1, "open.example", 80)...)
				c.expect(5, 0, 0, 1, 0, 0, 0, 0, 0, 0)
			} else {
				c.send([]byte("CONNECT open.example:80 HTTP/1.1\r\n\r\n")...)
				c.expect([]byte("HTTP/1.1 200 Connection established\r\n\r\n")...)
			}
			if s.Addr() == nil || s.Addr().String() != addr {
				t.Fatalf("Addr() = %v, want %s", s.Addr(), addr)
			}

			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown with an open tunnel = %v, want DeadlineExceeded", err)
			}
			if err := <-served; !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve = %v, want ErrServerClosed", err)
			}
			c.expectClosed(0)
			if err := s.Shutdown(t.Context()); err != nil {
				t.Fatalf("second Shutdown = %v", err)
			}
			if err := s.Serve(listen(t)); !errors.Is(err, ErrServerClosed) {
				t.Fatalf("Serve after Shutdown = %v, want ErrServerClosed", err)
			}
			if _, err := net.Dial("tcp", addr); err == nil {
				t.Fatal("listener still accepts after Shutdown")
			}
		})
	}
}

func TestShutdownIdleReturnsNil(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	s, err := NewSOCKS(Config{Dial: f.dial})
	if err != nil {
		t.Fatal(err)
	}
	l := listen(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
}

// TestMaxConns: beyond MaxConns a new client is closed at once, and the
// slot frees when the first client leaves.
func TestMaxConns(t *testing.T) {
	t.Parallel()
	f := newFakeNet(echoBackend(t))
	addr := startSOCKS(t, f, func(c *Config) { c.MaxConns = 1 })
	first := dialRaw(t, addr)
	first.send(5, 1, 0)
	first.expect(5, 0) // the first connection holds the only slot

	second := dialRaw(t, addr)
	second.send(5, 1, 0)
	second.expectClosed(0)

	_ = first.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = c.Write([]byte{5, 1, 0})
		buf := make([]byte, 2)
		_, err = c.Read(buf)
		_ = c.Close()
		if err == nil && buf[0] == 5 && buf[1] == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("slot never freed after the first client left")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	f := newFakeNet("127.0.0.1:1")
	for name, cfg := range map[string]Config{
		"no dial":           {},
		"negative timeout":  {Dial: f.dial, HandshakeTimeout: -1},
		"negative connect":  {Dial: f.dial, ConnectTimeout: -1},
		"negative maxconns": {Dial: f.dial, MaxConns: -1},
	} {
		if _, err := NewSOCKS(cfg); err == nil {
			t.Errorf("NewSOCKS(%s) succeeded", name)
		}
		if _, err := NewHTTPConnect(cfg); err == nil {
			t.Errorf("NewHTTPConnect(%s) succeeded", name)
		}
	}
}
