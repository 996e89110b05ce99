package torproc_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
	"github.com/co-infuse/co-infuse/internal/tornet"
	"github.com/co-infuse/co-infuse/internal/torproc"
	"github.com/co-infuse/co-infuse/rendezvous"
)

// One private Tor network for the whole package: its bootstrap is the
// slow part, paid once.
var (
	netOnce sync.Once
	netw    *tornet.Network
	netErr  error
	netDir  string
)

func TestMain(m *testing.M) {
	if dir := os.Getenv("TORPROC_TEST_CHILD"); dir != "" {
		ownerChild(dir)
		return
	}
	code := m.Run()
	if netw != nil {
		netw.Close()
	}
	if netDir != "" {
		os.RemoveAll(netDir)
	}
	os.Exit(code)
}

func testLogger() *slog.Logger {
	lvl := slog.LevelWarn
	if testing.Verbose() {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}

func needTor(t *testing.T) {
	t.Helper()
	for _, b := range []string{"tor", "tor-gencert"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("%s not installed (apt-get install tor)", b)
		}
	}
}

// network returns the package's shared private Tor network.
func network(t *testing.T) *tornet.Network {
	t.Helper()
	needTor(t)
	netOnce.Do(func() {
		netDir, netErr = os.MkdirTemp("", "torproc-test-")
		if netErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		began := time.Now()
		netw, netErr = tornet.Start(ctx, netDir, tornet.Options{}, testLogger())
		fmt.Fprintf(os.Stderr, "tornet: network ready in %v\n", time.Since(began).Round(time.Millisecond))
	})
	if netErr != nil {
		t.Fatalf("private tor network: %v", netErr)
	}
	return netw
}

// client starts a bootstrapped client in the shared network, closed at
// the end of the test.
func client(ctx context.Context, t *testing.T) *torproc.Tor {
	t.Helper()
	c, err := network(t).Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// payload is a body large enough to span many cells.
func payload(t *testing.T) []byte {
	b := make([]byte, 200<<10)
	rand.Read(b)
	return b
}

// server serves body on 127.0.0.1.
func server(t *testing.T, body []byte) netip.AddrPort {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	t.Cleanup(s.Close)
	return netip.MustParseAddrPort(strings.TrimPrefix(s.URL, "http://"))
}

// get fetches http://host:port/ through c's SOCKS port.
func get(ctx context.Context, c *torproc.Tor, host string, port uint16) ([]byte, error) {
	hc := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return c.DialSocks(ctx, host, port) },
	}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/", host, port), nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, 1<<20))
}

// getEventually retries get until it succeeds (an onion service's
// descriptor takes a while to reach the HSDirs) or ctx ends.
func getEventually(ctx context.Context, t *testing.T, c *torproc.Tor, host string, port uint16) []byte {
	t.Helper()
	var last error
	for ctx.Err() == nil {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		b, err := get(actx, c, host, port)
		cancel()
		if err == nil {
			return b
		}
		last = err
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	t.Fatalf("%s never answered: %v", host, last)
	return nil
}

// pidsIn lists processes whose command line mentions dir.
func pidsIn(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var pids []string
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// ownerChild is the re-executed test binary of TestTorDiesWithOwner: it
// starts a tor, prints its pid and waits to be killed.
func ownerChild(dir string) {
	tor, err := torproc.Start(context.Background(), torproc.Config{DataDir: dir, Logger: slog.New(slog.DiscardHandler), Torrc: []string{
		"TestingTorNetwork 1",
		"DirAuthority dead orport=1 no-v2 v3ident=" + strings.Repeat("AB", 20) + " 127.0.0.1:1 " + strings.Repeat("CD", 20),
	}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	fmt.Println("pid", tor.Pid())
	select {}
}

// TestTorDiesWithOwner: when the process that started tor is killed with
// SIGKILL (no Close), tor exits too (TAKEOWNERSHIP and
// __OwningControllerProcess): no orphan tor.
func TestTorDiesWithOwner(t *testing.T) {
	needTor(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "TORPROC_TEST_CHILD="+t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var word string
	var pid int
	if _, err := fmt.Fscan(out, &word, &pid); err != nil || word != "pid" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child: %q %v", word, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		// tor is our grandchild's child, reparented to init (or a
		// subreaper) which reaps it; a zombie counts as gone.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && strings.Contains(string(b), ") Z ") {
			return
		}
		select {
		case <-ctx.Done():
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("tor (pid %d) outlived the process that started it", pid)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestMissingBinary(t *testing.T) {
	t.Parallel()
	_, err := torproc.Start(context.Background(), torproc.Config{Binary: "/nonexistent/tor-binary", DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/tor-binary") {
		t.Fatalf("error %v does not name the missing binary", err)
	}
}

// TestBootstrapTimeout: a tor whose only authority is unreachable never
// bootstraps; WaitBootstrapped says so at its deadline, and Close leaves
// no process.
func TestBootstrapTimeout(t *testing.T) {
	needTor(t)
	t.Parallel()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tor, err := torproc.Start(ctx, torproc.Config{DataDir: dir, Logger: testLogger(), Torrc: unreachableTorrc(t)})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "control_auth_cookie")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("control cookie: %v, mode %v; want 0600", err, st.Mode())
	}
	if !tor.SocksAddr().Addr().IsLoopback() || !tor.ControlAddr().Addr().IsLoopback() {
		t.Errorf("socks %v control %v: want loopback", tor.SocksAddr(), tor.ControlAddr())
	}
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	err = tor.WaitBootstrapped(wctx)
	wcancel()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "did not bootstrap") {
		t.Errorf("WaitBootstrapped = %v, want a deadline error saying tor did not bootstrap", err)
	}
	if s := tor.Status(); !s.Running || s.Bootstrap == 100 {
		t.Errorf("status %+v: want running, not bootstrapped", s)
	}
	tor.Close()
	tor.Close()
	if p := pidsIn(dir); len(p) != 0 {
		t.Errorf("tor processes left after Close: %v", p)
	}
	if err := tor.WaitBootstrapped(ctx); !errors.Is(err, torproc.ErrClosed) {
		t.Errorf("WaitBootstrapped after Close = %v, want ErrClosed", err)
	}
}

// TestWaitBootstrappedTorExits: tor killed while a caller waits for its
// bootstrap gives that caller a clear error at once, not a hang; with a
// long restart backoff tor stays down and Status says why.
func TestWaitBootstrappedTorExits(t *testing.T) {
	needTor(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tor, err := torproc.Start(ctx, torproc.Config{DataDir: t.TempDir(), Logger: testLogger(), RestartBackoff: time.Hour, Torrc: unreachableTorrc(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tor.Close()
	if err := syscall.Kill(tor.Pid(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err = tor.WaitBootstrapped(ctx)
	if !errors.Is(err, torproc.ErrExited) && !errors.Is(err, torproc.ErrNotRunning) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("WaitBootstrapped = %v, want ErrExited or ErrNotRunning saying tor was killed", err)
	}
	if ctx.Err() != nil {
		t.Fatal("WaitBootstrapped returned only at its deadline")
	}
	for tor.Status().Running {
		select {
		case <-ctx.Done():
			t.Fatal("status still says running after kill -9")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if s := tor.Status(); !strings.Contains(s.LastError, "killed") || s.Restarts != 0 {
		t.Errorf("status %+v: want the kill in last_error, no restart yet", s)
	}
}

// TestDialSocksExit fetches a loopback page through the private Tor
// network's exits, byte for byte.
func TestDialSocksExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := client(ctx, t)
	body := payload(t)
	ap := server(t, body)
	got := getEventually(ctx, t, c, ap.Addr().String(), ap.Port())
	if !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes through tor, want the %d served", len(got), len(body))
	}
	// The same through SOCKS username/password isolation (the tor
	// gateway's dial): tor takes the key and opens the stream.
	conn, err := c.DialSocksIsolated(ctx, ap.Addr().String(), ap.Port(), "isolation-key")
	if err != nil {
		t.Fatalf("isolated dial: %v", err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := io.ReadAll(io.LimitReader(conn, 2<<20))
	if err != nil || !bytes.HasSuffix(resp, body) {
		t.Fatalf("isolated dial read %d bytes (%v), want a response ending in the %d served", len(resp), err, len(body))
	}
}

// TestOnionServices: a Tor-only service (AddOnionNew) reached by another
// client byte for byte; AddOnion with a known key gets the address
// rendezvous computes for that key; unknown and bad-checksum .onions give
// Tor's extended SOCKS codes; after kill -9 the supervisor restarts tor,
// re-adds the service and it is reachable again.
func TestOnionServices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	host := client(ctx, t)
	visitor := client(ctx, t)
	body := payload(t)
	ap := server(t, body)

	id, err := host.AddOnionNew(ctx, []torproc.PortMap{{Virtual: 80, Target: ap}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onionaddr.ParseID(id); err != nil {
		t.Fatalf("service id %q: %v", id, err)
	}
	if got := getEventually(ctx, t, visitor, id+".onion", 80); !bytes.Equal(got, body) {
		t.Fatalf("got %d bytes from the onion service, want the %d served", len(got), len(body))
	}

	t.Run("known key", func(t *testing.T) {
		k, err := rendezvous.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(k.String(), rendezvous.KeyPrefix))
		if err != nil || len(raw) != 64 {
			t.Fatalf("expanded key: %v (%d bytes)", err, len(raw))
		}
		kid, err := host.AddOnion(ctx, [64]byte(raw), []torproc.PortMap{{Virtual: 8333, Target: ap}})
		if err != nil {
			t.Fatal(err)
		}
		if kid != k.ServiceID() {
			t.Fatalf("tor published %s, rendezvous computes %s for the key", kid, k.ServiceID())
		}
		if s := host.Status(); !strings.Contains(strings.Join(s.Onions, ","), kid) {
			t.Errorf("status onions %v lack %s", s.Onions, kid)
		}
		if err := host.DelOnion(ctx, kid); err != nil {
			t.Fatal(err)
		}
		if s := host.Status(); strings.Contains(strings.Join(s.Onions, ","), kid) {
			t.Errorf("status onions %v still list %s after DelOnion", s.Onions, kid)
		}
	})

	t.Run("socks errors", func(t *testing.T) {
		unknown, err := rendezvous.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		bad := []byte(unknown.ServiceID())
		// Flip a checksum character (bytes 32-33 of the decoded id).
		if bad[52] == 'a' {
			bad[52] = 'b'
		} else {
			bad[52] = 'a'
		}
		for _, tc := range []struct {
			name string
			host string
			code byte
		}{
			{"unknown service", unknown.Address(), 0xF0},
			{"bad checksum", string(bad) + ".onion", 0xF6},
		} {
			dctx, dcancel := context.WithTimeout(ctx, 3*time.Minute)
			conn, err := visitor.DialSocks(dctx, tc.host, 80)
			dcancel()
			var se *torproc.SocksError
			if !errors.As(err, &se) {
				if conn != nil {
					conn.Close()
				}
				t.Errorf("%s: DialSocks = %v, want a SocksError", tc.name, err)
				continue
			}
			if se.Code != tc.code {
				t.Errorf("%s: SOCKS code %#x (%v), want %#x", tc.name, se.Code, se, tc.code)
			}
		}
	})

	t.Run("restart", func(t *testing.T) {
		pid := host.Pid()
		if pid == 0 {
			t.Fatal("host tor not running")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for {
			s := host.Status()
			if s.Restarts == 1 && s.Running && host.Pid() != pid {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("tor not restarted after kill -9: %+v", host.Status())
			case <-time.After(100 * time.Millisecond):
			}
		}
		if s := host.Status(); s.LastError == "" || len(s.Onions) != 1 || s.Onions[0] != id {
			t.Errorf("status after restart %+v: want the exit in last_error and the service still listed", s)
		}
		if err := host.WaitBootstrapped(ctx); err != nil {
			t.Fatal(err)
		}
		// A fresh visitor, so no cached rendezvous circuit from before
		// the kill answers for the restarted service.
		v2 := client(ctx, t)
		if got := getEventually(ctx, t, v2, id+".onion", 80); !bytes.Equal(got, body) {
			t.Fatalf("after restart: got %d bytes, want %d", len(got), len(body))
		}
	})
}

// unreachableTorrc is a torrc whose only directory authority is a
// loopback port nobody listens on: tor starts but never bootstraps, and
// nothing leaves the machine.
func unreachableTorrc(t *testing.T) []string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	return []string{"TestingTorNetwork 1",
		"DirAuthority dead orport=1 no-v2 v3ident=" + strings.Repeat("AB", 20) + " " + dead + " " + strings.Repeat("CD", 20)}
}

// TestDataDirCannotInjectTorrc: the data directory's path goes into torrc
// lines (DataDirectory, CookieAuthFile, ...), so a path with a line break
// would add torrc lines of its own (a SocksPort on every interface, a
// world-readable cookie) and one with '#' would cut the line short there.
// Start refuses such a path before it writes anything. Found in review:
// only Config.Torrc was checked.
func TestDataDirCannotInjectTorrc(t *testing.T) {
	t.Parallel()
	for _, name := range []string{
		"x\nSocksPort 0.0.0.0:9050",
		"x\rCookieAuthFileGroupReadable 1",
		"co#infuse",
		"nul\x00byte",
	} {
		dir := filepath.Join(t.TempDir(), name)
		// "true" exits at once: nothing real would run even if Start
		// went ahead.
		_, err := torproc.Start(context.Background(), torproc.Config{Binary: "true", DataDir: dir, StartTimeout: 5 * time.Second})
		if err == nil || !strings.Contains(err.Error(), "DataDir") {
			t.Errorf("DataDir %q: Start error %v, want a refusal naming DataDir", name, err)
		}
		if _, serr := os.Stat(filepath.Join(dir, "torrc")); serr == nil {
			t.Errorf("DataDir %q: a torrc was written", name)
		}
	}
}

// TestPortInUse: a tor whose configured port another process holds fails
// its start with ErrPortInUse (so a caller that picked the port can pick
// again), and the error carries tor's own words.
func TestPortInUse(t *testing.T) {
	needTor(t)
	t.Parallel()
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	torrc := append(unreachableTorrc(t), fmt.Sprintf("ORPort %s", held.Addr()), "AssumeReachable 1")
	tor, err := torproc.Start(ctx, torproc.Config{DataDir: t.TempDir(), Logger: testLogger(), Torrc: torrc})
	if err == nil {
		tor.Close()
		t.Fatal("tor started on a port another listener holds")
	}
	if !errors.Is(err, torproc.ErrPortInUse) || !strings.Contains(err.Error(), "Address already in use") {
		t.Fatalf("Start = %v, want ErrPortInUse with tor's log line", err)
	}
}
