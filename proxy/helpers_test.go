package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type dialCall struct {
	iso    Isolation
	target string // Dial's target.String(), or Resolve's host
}

// fakeNet stands in for node/: its Dial records what the front end asked
// for and connects to one loopback backend whatever the target, unless a
// scripted error is set for the target's host.
type fakeNet struct {
	backend string // 127.0.0.1:port

	mu    sync.Mutex
	calls []dialCall            // guarded by mu
	errs  map[string]error      // guarded by mu; keyed by host
	addrs map[string]netip.Addr // guarded by mu; Resolve answers
}

func newFakeNet(backend string) *fakeNet {
	return &fakeNet{backend: backend, errs: map[string]error{}, addrs: map[string]netip.Addr{}}
}

func (f *fakeNet) dial(ctx context.Context, iso Isolation, target cell.Target) (net.Conn, error) {
	if target.IsZero() {
		return nil, errors.New("test: Dial got the zero Target")
	}
	host := target.Host()
	f.mu.Lock()
	f.calls = append(f.calls, dialCall{iso, target.String()})
	scripted, ok := f.errs[host]
	f.mu.Unlock()
	if ok {
		if scripted == errBlock {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, scripted
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", f.backend)
}

func (f *fakeNet) resolve(_ context.Context, iso Isolation, host string) (netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, dialCall{iso, host})
	if err, ok := f.errs[host]; ok {
		return netip.Addr{}, err
	}
	return f.addrs[host], nil
}

func (f *fakeNet) setErr(host string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[host] = err
}

func (f *fakeNet) setAddr(host string, a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.addrs[host] = a
}

func (f *fakeNet) got() []dialCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]dialCall(nil), f.calls...)
}

// errBlock scripts a Dial that waits for its context.
var errBlock = errors.New("test: block until ctx is done")

// listen returns a 127.0.0.1 listener on a kernel-chosen port.
func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// echoBackend is a loopback server that echoes each connection's bytes.
func echoBackend(t *testing.T) string {
	t.Helper()
	l := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	return l.Addr().String()
}

type testServer interface {
	Serve(net.Listener) error
	Close() error
	Addr() net.Addr
}

// serve runs s on a fresh loopback listener and stops it when the test
// ends, checking that Serve returned ErrServerClosed.
func serve(t *testing.T, s testServer) string {
	t.Helper()
	l := listen(t)
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		_ = s.Close()
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

func startSOCKS(t *testing.T, f *fakeNet, mod func(*Config)) string {
	t.Helper()
	cfg := Config{Dial: f.dial, Resolve: f.resolve, HandshakeTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewSOCKS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s)
}

func startHTTP(t *testing.T, f *fakeNet, mod func(*Config)) string {
	t.Helper()
	cfg := Config{Dial: f.dial, HandshakeTimeout: 5 * time.Second, ConnectTimeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewHTTPConnect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return serve(t, s)
}

// rawConn dials addr and fails the test on any I/O error; every read has a
// deadline so a broken server cannot hang the test.
type rawConn struct {
	t *testing.T
	net.Conn
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { _ = c.Close() })
	return &rawConn{t, c}
}

func (c *rawConn) send(b ...byte) {
	c.t.Helper()
	if _, err := c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rawConn) expect(want ...byte) {
	c.t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		c.t.Fatalf("read %d bytes: %v (got % x)", len(want), err, got)
	}
	if string(got) != string(want) {
		c.t.Fatalf("got % x, want % x", got, want)
	}
}

func (c *rawConn) read(n int) []byte {
	c.t.Helper()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		c.t.Fatalf("read %d bytes: %v (got % x)", n, err, got)
	}
	return got
}

// expectClosed reads until EOF (or reset), failing if more than max bytes
// arrive first; it returns what arrived.
func (c *rawConn) expectClosed(max int) []byte {
	c.t.Helper()
	got, err := io.ReadAll(io.LimitReader(c, int64(max)+1))
	if len(got) > max {
		c.t.Fatalf("server sent %d+ bytes (% x) instead of closing", len(got), got)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("server did not close the connection: %v", err)
	}
	return got
}

// socksDomain builds "05 cmd 00 03 len host port".
func socksDomain(cmd byte, host string, port uint16) []byte {
	b := []byte{5, cmd, 0, 3, byte(len(host))}
	b = append(b, host...)
	return append(b, byte(port>>8), byte(port))
}
