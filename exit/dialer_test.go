package exit

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// listenLoopback starts a TCP listener on 127.0.0.1 that accepts
// connections, writes "hi" and closes them, until the test ends.
func listenLoopback(t *testing.T) *net.TCPListener {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hi"))
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	return l
}

// closedPort returns a 127.0.0.1 port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	return port
}

// recorder is a DialFunc that records every address it is asked for and
// dials only 127.0.0.1, failing anything else without touching the network.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	r.mu.Lock()
	r.calls = append(r.calls, addr)
	r.mu.Unlock()
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || ap.Addr() != netip.MustParseAddr("127.0.0.1") {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("test: only 127.0.0.1 is dialed")}
	}
	return (&net.Dialer{}).DialContext(ctx, network, addr)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func staticResolver(addrs ...string) Resolver {
	return func(context.Context, string) ([]netip.Addr, error) {
		out := make([]netip.Addr, len(addrs))
		for i, a := range addrs {
			out[i] = netip.MustParseAddr(a)
		}
		return out, nil
	}
}

func mustDialer(t *testing.T, p *Policy, opts ...Option) *Dialer {
	t.Helper()
	d, err := New(p, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func loopbackPolicy(t *testing.T) *Policy {
	t.Helper()
	p, err := NewPolicy(nil, LoopbackRanges())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDialLoopbackPolicy(t *testing.T) {
	t.Parallel()
	l := listenLoopback(t)
	target := mustTarget(t, l.Addr().String())
	ctx := t.Context()

	rec := &recorder{}
	_, err := mustDialer(t, DefaultPolicy(), WithDialFunc(rec.dial)).Dial(ctx, target)
	if !errors.Is(err, circuit.ErrExitPolicy) {
		t.Fatalf("default policy Dial(loopback) = %v, want ErrExitPolicy", err)
	}
	if calls := rec.got(); len(calls) != 0 {
		t.Fatalf("refused target was dialed: %v", calls)
	}

	c, err := mustDialer(t, loopbackPolicy(t)).Dial(ctx, target)
	if err != nil {
		t.Fatalf("loopback-allowed Dial = %v", err)
	}
	defer c.Close()
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v; want hi", buf, err)
	}
}

func TestDialRebindingRefusedWithoutDialing(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		addrs []string
	}{
		{"private", []string{"10.0.0.7"}},
		{"loopback", []string{"127.0.0.1"}},
		{"mapped private", []string{"::ffff:192.168.1.1"}},
		{"link-local metadata", []string{"169.254.169.254"}},
		{"all private", []string{"192.168.0.1", "fd00::1", "100.64.1.1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			d := mustDialer(t, DefaultPolicy(), WithResolver(staticResolver(tc.addrs...)), WithDialFunc(rec.dial))
			_, err := d.Dial(t.Context(), mustTarget(t, "rebind.example.com:443"))
			if !errors.Is(err, circuit.ErrExitPolicy) {
				t.Fatalf("Dial = %v, want ErrExitPolicy", err)
			}
			if calls := rec.got(); len(calls) != 0 {
				t.Fatalf("dialed %v despite policy", calls)
			}
		})
	}
}

func TestDialOnlyAllowedAddresses(t *testing.T) {
	t.Parallel()
	l := listenLoopback(t)
	port := l.Addr().(*net.TCPAddr).Port
	rec := &recorder{}
	// A mixed answer: the private address is dropped, the (allowed) loopback
	// one is dialed.
	d := mustDialer(t, loopbackPolicy(t), WithResolver(staticResolver("10.0.0.1", "127.0.0.1")), WithDialFunc(rec.dial))
	c, err := d.Dial(t.Context(), mustTarget(t, "mixed.example.com:"+strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	_ = c.Close()
	want := "127.0.0.1:" + strconv.Itoa(port)
	if calls := rec.got(); len(calls) != 1 || calls[0] != want {
		t.Fatalf("dialed %v, want only %s", calls, want)
	}
}

func TestDialTriesAddressesInOrder(t *testing.T) {
	t.Parallel()
	l := listenLoopback(t)
	port := l.Addr().(*net.TCPAddr).Port
	rec := &recorder{}
	p, err := NewPolicy([]string{"accept *:*"}, LoopbackRanges())
	if err != nil {
		t.Fatal(err)
	}
	d := mustDialer(t, p, WithResolver(staticResolver("1.1.1.1", "2606:4700::1111", "127.0.0.1")), WithDialFunc(rec.dial))
	c, err := d.Dial(t.Context(), mustTarget(t, "order.example.com:"+strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("Dial = %v", err)
	}
	_ = c.Close()
	ps := strconv.Itoa(port)
	want := []string{"1.1.1.1:" + ps, "[2606:4700::1111]:" + ps, "127.0.0.1:" + ps}
	if got := rec.got(); len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("dial order %v, want %v", got, want)
	}
}

func TestDialErrorMapping(t *testing.T) {
	t.Parallel()
	closed := "127.0.0.1:" + strconv.Itoa(closedPort(t))
	blocking := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	}
	unreachable := func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}
	}
	nx := func(context.Context, string) ([]netip.Addr, error) {
		return nil, &net.DNSError{Err: "no such host", Name: "nx.example", IsNotFound: true}
	}
	cases := []struct {
		name   string
		opts   []Option
		target string
		want   error
	}{
		{"refused", nil, closed, circuit.ErrConnRefused},
		{"timeout", []Option{WithDialFunc(blocking), WithDialTimeout(50 * time.Millisecond)}, "127.0.0.1:9", circuit.ErrTimeout},
		{"unreachable", []Option{WithDialFunc(unreachable)}, "127.0.0.1:9", circuit.ErrUnreachable},
		{"nxdomain", []Option{WithResolver(nx)}, "nx.example:80", circuit.ErrResolveFailed},
		{"empty answer", []Option{WithResolver(staticResolver())}, "empty.example:80", circuit.ErrResolveFailed},
		{"onion", nil, "abcdefghij.onion:80", circuit.ErrResolveFailed},
		{"onion any case", nil, "www.ABCDEFGHIJ.Onion.:80", circuit.ErrResolveFailed},
		// Malformed targets no longer reach the exit: the front end's
		// cell.ParseTarget refuses them, and BEGIN cannot carry them.
		{"numeric name", nil, "2130706433:80", cell.ErrBadTarget},
		{"hex name", nil, "0x7f.1:80", cell.ErrBadTarget},
		{"bad char", nil, "exa mple.com:80", cell.ErrBadTarget},
		{"no port", nil, "example.com", cell.ErrBadTarget},
		{"port zero", nil, "example.com:0", cell.ErrBadTarget},
		{"port big", nil, "example.com:65536", cell.ErrBadTarget},
		{"port sign", nil, "example.com:+80", cell.ErrBadTarget},
		{"v6 unbracketed", nil, "::1:80", cell.ErrBadTarget},
		{"v4 bracketed", nil, "[127.0.0.1]:80", cell.ErrBadTarget},
		{"zone", nil, "[fe80::1%lo]:80", cell.ErrBadTarget},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			target, err := cell.ParseTarget(tc.target)
			if err != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("ParseTarget(%q) = %v, want %v", tc.target, err, tc.want)
				}
				return
			}
			d := mustDialer(t, loopbackPolicy(t), tc.opts...)
			c, err := d.Dial(t.Context(), target)
			if c != nil {
				_ = c.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Dial(%q) = %v, want %v", tc.target, err, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		answer  []string
		host    string
		want    string
		wantErr error
	}{
		{"prefers v4", []string{"2606:4700::1111", "1.1.1.1"}, "dual.example", "1.1.1.1", nil},
		{"v6 only", []string{"2606:4700::1111"}, "v6.example", "2606:4700::1111", nil},
		{"skips private", []string{"10.0.0.1", "9.9.9.9"}, "mixed.example", "9.9.9.9", nil},
		{"unmaps", []string{"::ffff:9.9.9.9"}, "mapped.example", "9.9.9.9", nil},
		{"all private", []string{"10.0.0.1", "fd00::1"}, "private.example", "", circuit.ErrExitPolicy},
		{"literal", nil, "8.8.4.4", "8.8.4.4", nil},
		{"private literal", nil, "192.168.0.1", "", circuit.ErrExitPolicy},
		{"empty", nil, "", "", circuit.ErrResolveFailed},
		{"onion", nil, "x.onion", "", circuit.ErrResolveFailed},
		{"onion any case", nil, "X.Onion.", "", circuit.ErrResolveFailed},
		{"bad char", nil, "a b", "", circuit.ErrResolveFailed},
		{"bracketed", nil, "[::1]", "", circuit.ErrResolveFailed},
		{"numeric name", nil, "2130706433", "", circuit.ErrResolveFailed},
		{"case and dot", []string{"9.9.9.9"}, "Dual.EXAMPLE.", "9.9.9.9", nil},
		{"v6 literal", nil, "2606:4700::1111", "2606:4700::1111", nil},
		{"mapped literal", nil, "::ffff:8.8.4.4", "8.8.4.4", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			called, asked := false, ""
			res := func(ctx context.Context, host string) ([]netip.Addr, error) {
				called, asked = true, host
				return staticResolver(tc.answer...)(ctx, host)
			}
			d := mustDialer(t, DefaultPolicy(), WithResolver(res))
			got, err := d.Resolve(t.Context(), tc.host)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Resolve(%q) = %v, %v; want %v", tc.host, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("Resolve(%q) = %v, %v; want %s", tc.host, got, err, tc.want)
			}
			if tc.answer == nil && called {
				t.Fatalf("literal %q went to the resolver", tc.host)
			}
			if want := strings.ToLower(strings.TrimSuffix(tc.host, ".")); tc.answer != nil && asked != want {
				t.Fatalf("resolver asked for %q, want the canonical %q", asked, want)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	t.Parallel()
	for name, opts := range map[string][]Option{
		"nil resolver": {WithResolver(nil)},
		"nil dial":     {WithDialFunc(nil)},
		"zero timeout": {WithDialTimeout(0)},
		"nil logger":   {WithLogger(nil)},
	} {
		if _, err := New(DefaultPolicy(), opts...); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	if _, err := New(nil); err == nil {
		t.Error("New(nil policy) succeeded")
	}
}

func BenchmarkPolicyCheckDefault(b *testing.B) {
	p := DefaultPolicy()
	ap := netip.MustParseAddrPort("[2606:4700::1111]:443")
	for b.Loop() {
		if err := p.Check(ap); err != nil {
			b.Fatal(err)
		}
	}
}

// TestErrorsWithholdDestination: errors leaving the exit may be logged by
// its callers, so they must not name the address or host.
func TestErrorsWithholdDestination(t *testing.T) {
	t.Parallel()
	port := strconv.Itoa(closedPort(t))
	_, err := mustDialer(t, loopbackPolicy(t)).Dial(t.Context(), mustTarget(t, "127.0.0.1:"+port))
	if !errors.Is(err, circuit.ErrConnRefused) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Dial = %v, want ErrConnRefused wrapping ECONNREFUSED", err)
	}
	if strings.Contains(err.Error(), port) {
		t.Fatalf("error %q names the destination", err)
	}
	nx := func(context.Context, string) ([]netip.Addr, error) {
		return nil, &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "secret.example", Server: "10.0.0.53:53", IsNotFound: true}}
	}
	_, err = mustDialer(t, DefaultPolicy(), WithResolver(nx)).Dial(t.Context(), mustTarget(t, "secret.example:443"))
	var de *net.DNSError
	if !errors.Is(err, circuit.ErrResolveFailed) || !errors.As(err, &de) || !de.IsNotFound {
		t.Fatalf("Dial = %v, want ErrResolveFailed wrapping a not-found DNSError", err)
	}
	if strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "10.0.0.53") {
		t.Fatalf("error %q names the destination", err)
	}
}
