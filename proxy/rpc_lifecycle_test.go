package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRPCShutdownForces checks that Shutdown whose ctx ends cancels a
// Broadcast still running, waits for its handler and reports ctx.Err().
func TestRPCShutdownForces(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	sawCancel := make(chan error, 1)
	s, err := NewRPC(RPCConfig{
		CookiePath: filepath.Join(t.TempDir(), ".cookie"),
		Broadcast: func(ctx context.Context, _ string, _ *float64) (string, error) {
			close(entered)
			<-ctx.Done()
			sawCancel <- ctx.Err()
			return "", ctx.Err()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	cookie, err := readCookie(s.CookiePath())
	if err != nil {
		t.Fatal(err)
	}

	replied := make(chan struct{})
	go func() {
		defer close(replied)
		// The connection is cut by the forced shutdown: no reply to check.
		_ = tryPostRPC("http://"+l.Addr().String(), basicAuth(cookie), `{"method":"sendrawtransaction","params":["00"],"id":1}`)
	}()
	select {
	case <-entered:
	case <-t.Context().Done():
		t.Fatal("Broadcast never called")
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // no grace at all
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	select {
	case err := <-sawCancel:
		if err == nil {
			t.Fatal("Broadcast's ctx ended without an error")
		}
	default:
		t.Fatal("Shutdown returned before the running Broadcast ended")
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	<-replied
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
}

// tryPostRPC is postRPC for a goroutine: no t, errors returned.
func tryPostRPC(url, auth, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tr := &http.Transport{Proxy: nil}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", auth)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// TestFailLimiter checks the token bucket with a fake clock: a burst of
// rate failures pass at once, then each waits its turn; time refills it.
func TestFailLimiter(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 0)
	l := newFailLimiter(4)
	l.now = func() time.Time { return now }
	for i := range 4 {
		if d := l.reserve(); d != 0 {
			t.Fatalf("attempt %d waits %v within the burst", i, d)
		}
	}
	if d := l.reserve(); d != 250*time.Millisecond {
		t.Fatalf("5th attempt waits %v, want 250ms", d)
	}
	if d := l.reserve(); d != 500*time.Millisecond {
		t.Fatalf("6th attempt waits %v, want 500ms", d)
	}
	now = now.Add(10 * time.Second) // refilled, but never above the burst
	for i := range 4 {
		if d := l.reserve(); d != 0 {
			t.Fatalf("after refill, attempt %d waits %v", i, d)
		}
	}
	if d := l.reserve(); d == 0 {
		t.Fatal("bucket grew beyond its burst")
	}
	// A waiter that gives up returns its token.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	before := l.tokens
	if err := l.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait: %v", err)
	}
	if l.tokens != before {
		t.Fatalf("tokens %v after a cancelled wait, want %v", l.tokens, before)
	}
}

// TestRPCMaxConns checks that a connection beyond MaxConns is closed at
// once while the first stays served.
func TestRPCMaxConns(t *testing.T) {
	t.Parallel()
	s := startRPC(t, func(c *RPCConfig) { c.MaxConns = 1 })
	addr := strings.TrimPrefix(s.url, "http://")
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	if err := pollUntil(t.Context(), func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.conns == 1
	}); err != nil {
		t.Fatal("first connection never counted")
	}
	second, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	if n, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatalf("second connection read %d bytes, want it closed", n)
	}
	// The first one still gets answers.
	req := "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: " + basicAuth(testRPCUser+":"+testRPCPass) +
		"\r\nContent-Length: 2\r\n\r\n[]"
	if _, err := first.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first connection: status %d", resp.StatusCode)
	}
}

// TestRPCMaxConcurrent checks that no more than MaxConcurrent calls run at
// once and that the waiting ones are served in turn.
func TestRPCMaxConcurrent(t *testing.T) {
	t.Parallel()
	const n = 4
	entered := make(chan struct{}, n)
	release := make(chan struct{})
	var mu sync.Mutex
	active, most := 0, 0
	s := startRPC(t, func(c *RPCConfig) {
		c.MaxConcurrent = 1
		c.Broadcast = func(ctx context.Context, _ string, _ *float64) (string, error) {
			mu.Lock()
			active++
			most = max(most, active)
			mu.Unlock()
			entered <- struct{}{}
			<-release
			mu.Lock()
			active--
			mu.Unlock()
			return testTxID, nil
		}
	})
	auth := basicAuth(testRPCUser + ":" + testRPCPass)
	errs := make(chan error, n)
	for range n {
		go func() {
			errs <- tryPostRPC(s.url, auth, `{"method":"sendrawtransaction","params":["00"],"id":1}`)
		}()
	}
	for range n {
		<-entered
		mu.Lock()
		a := active
		mu.Unlock()
		if a != 1 {
			t.Errorf("%d calls running at once, MaxConcurrent is 1", a)
		}
		release <- struct{}{}
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most != 1 {
		t.Errorf("at most %d calls ran at once, want 1", most)
	}
}
