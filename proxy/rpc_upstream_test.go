package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// fakeUpstream is a loopback bitcoind stand-in for the protocol tests (the
// real-btcd test is TestRPCBtcdUpstream): it checks Basic auth and answers
// each call with "up:<method>", "boom" with a 500 error, in order.
type fakeUpstream struct {
	srv      *httptest.Server
	userPass string

	mu     sync.Mutex
	bodies []string // guarded by mu
	paths  []string // guarded by mu
}

func newFakeUpstream(t *testing.T, userPass string) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{userPass: userPass}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *fakeUpstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	u.mu.Lock()
	u.bodies = append(u.bodies, string(body))
	u.paths = append(u.paths, r.URL.Path)
	want := u.userPass
	u.mu.Unlock()
	if r.Header.Get("Authorization") != basicAuth(want) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	reply := func(raw json.RawMessage) (string, int) {
		var c struct {
			Method string          `json:"method"`
			ID     json.RawMessage `json:"id"`
		}
		_ = json.Unmarshal(raw, &c)
		if c.ID == nil {
			c.ID = json.RawMessage("null")
		}
		if c.Method == "boom" {
			return fmt.Sprintf(`{"result":null,"error":{"code":-5,"message":"boom"},"id":%s}`, c.ID), 500
		}
		res, _ := json.Marshal("up:" + c.Method + r.URL.Path)
		return fmt.Sprintf(`{"result":%s,"error":null,"id":%s}`, res, c.ID), 200
	}
	w.Header().Set("Content-Type", "application/json")
	if strings.HasPrefix(strings.TrimSpace(string(body)), "[") {
		var arr []json.RawMessage
		_ = json.Unmarshal(body, &arr)
		var out []string
		for _, e := range arr {
			s, _ := reply(e)
			out = append(out, s)
		}
		fmt.Fprintf(w, "[%s]\n", strings.Join(out, ","))
		return
	}
	s, status := reply(body)
	w.WriteHeader(status)
	fmt.Fprintln(w, s)
}

func (u *fakeUpstream) seen() ([]string, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.bodies...), append([]string(nil), u.paths...)
}

// TestRPCPassThrough checks forwarding: single calls and batches with no
// local method go unchanged, status included; mixed batches are split and
// reassembled in order; the client's path is kept; the client's
// credentials never reach the upstream.
func TestRPCPassThrough(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, "up:pw")
	s := startRPC(t, func(c *RPCConfig) {
		c.Upstream = &RPCUpstream{URL: strings.TrimPrefix(up.srv.URL, "http://"), User: "up", Password: "pw"}
		c.MaxBatch = 5
	})
	auth := basicAuth(testRPCUser + ":" + testRPCPass)

	single := `{"jsonrpc":"1.0","method":"getblockcount","params":[],"id":"x"}`
	r := postRPC(t, s.url, auth, single)
	if r.status != 200 || r.body != `{"result":"up:getblockcount/","error":null,"id":"x"}`+"\n" {
		t.Errorf("single: %d %s", r.status, r.body)
	}
	bodies, _ := up.seen()
	if len(bodies) != 1 || bodies[0] != single {
		t.Errorf("upstream got %q, want the body unchanged", bodies)
	}

	r = postRPC(t, s.url, auth, `{"method":"boom","id":3}`)
	if r.status != 500 || !strings.Contains(r.body, `"message":"boom"`) {
		t.Errorf("upstream error: %d %s, want its 500 and body", r.status, r.body)
	}

	r = postRPC(t, s.url+"/wallet/w1", auth, `{"method":"getbalance","id":1}`)
	if !strings.Contains(r.body, `"up:getbalance/wallet/w1"`) {
		t.Errorf("wallet path: %s", r.body)
	}

	// A batch of forwarded calls only: one upstream request, unchanged.
	batch := `[{"method":"a","id":1}, {"method":"b","id":2}]`
	r = postRPC(t, s.url, auth, batch)
	if r.status != 200 || r.body != `[{"result":"up:a/","error":null,"id":1},{"result":"up:b/","error":null,"id":2}]`+"\n" {
		t.Errorf("forwarded batch: %d %s", r.status, r.body)
	}
	bodies, _ = up.seen()
	if bodies[len(bodies)-1] != batch {
		t.Errorf("upstream got %q, want %q", bodies[len(bodies)-1], batch)
	}

	// Mixed: local calls here, the rest in one sub-batch, in order.
	mixed := `[{"method":"getblockcount","id":1},` +
		`{"method":"sendrawtransaction","params":["00"],"id":2},` +
		`{"jsonrpc":"2.0","method":"getbestblockhash","id":3},` +
		`{"jsonrpc":"2.0","method":"sendrawtransaction","params":["00"]},` +
		`"junk"]`
	r = postRPC(t, s.url, auth, mixed)
	want := `[{"result":"up:getblockcount/","error":null,"id":1},` +
		`{"result":"` + testTxID + `","error":null,"id":2},` +
		`{"result":"up:getbestblockhash/","error":null,"id":3},` +
		`{"result":null,"error":{"code":-32600,"message":"Invalid Request object"},"id":null}]` + "\n"
	if r.status != 200 || r.body != want {
		t.Errorf("mixed batch:\n got %d %s\nwant %s", r.status, r.body, want)
	}
	bodies, _ = up.seen()
	if got := bodies[len(bodies)-1]; got != `[{"method":"getblockcount","id":1},{"jsonrpc":"2.0","method":"getbestblockhash","id":3}]` {
		t.Errorf("sub-batch sent upstream: %s", got)
	}

	// A method name spelled with escapes is still recognised.
	r = postRPC(t, s.url, auth, `[{"method":"\u0073endrawtransaction","params":["00"],"id":1}]`)
	if r.body != `[{"result":"`+testTxID+`","error":null,"id":1}]`+"\n" {
		t.Errorf("escaped method: %s", r.body)
	}
	// submitpackage would broadcast from the upstream: never forwarded.
	r = postRPC(t, s.url, auth, `{"method":"submitpackage","params":[["00"]],"id":1}`)
	if r.status != 404 || !strings.Contains(r.body, `"code":-32601`) {
		t.Errorf("submitpackage: %d %s", r.status, r.body)
	}
	r = postRPC(t, s.url, auth, `[{"method":"getblockcount","id":1},{"jsonrpc":"2.0","method":"submitpackage","params":[["00"]],"id":2}]`)
	if r.status != 200 || !strings.Contains(r.body, `"up:getblockcount/"`) || !strings.Contains(r.body, `"code":-32601`) {
		t.Errorf("submitpackage in a batch: %d %s", r.status, r.body)
	}
	bodies, _ = up.seen()
	for _, b := range bodies {
		if strings.Contains(b, "sendrawtransaction") || strings.Contains(b, "submitpackage") || strings.Contains(b, `\u`) {
			t.Errorf("a broadcast reached the upstream: %s", b)
		}
	}

	// A forwarded batch is not held to MaxBatch (5 here): it is not parsed.
	long := "[" + strings.Repeat(`{"method":"getblockcount","id":1},`, 5) + `{"method":"getblockcount","id":1}]`
	r = postRPC(t, s.url, auth, long)
	if r.status != 200 || strings.Count(r.body, "up:getblockcount") != 6 {
		t.Errorf("long forwarded batch: %d %s", r.status, r.body)
	}
}

// TestRPCUpstreamFailures checks the errors for an upstream that is down
// or refuses our credentials, and cookie authentication to the upstream.
func TestRPCUpstreamFailures(t *testing.T) {
	t.Parallel()
	auth := basicAuth(testRPCUser + ":" + testRPCPass)

	t.Run("down", func(t *testing.T) {
		t.Parallel()
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close() // nothing listens there now
		s := startRPC(t, func(c *RPCConfig) { c.Upstream = &RPCUpstream{URL: addr} })
		r := postRPC(t, s.url, auth, `{"method":"getblockcount","id":1}`)
		if r.status != 500 || r.body != `{"result":null,"error":{"code":-9,"message":"upstream node: not reachable"},"id":1}`+"\n" {
			t.Errorf("single: %d %s", r.status, r.body)
		}
		r = postRPC(t, s.url, auth, `[{"method":"getblockcount","id":1},{"method":"sendrawtransaction","params":["00"],"id":2}]`)
		want := `[{"result":null,"error":{"code":-9,"message":"upstream node: not reachable"},"id":1},{"result":"` + testTxID + `","error":null,"id":2}]` + "\n"
		if r.status != 200 || r.body != want {
			t.Errorf("batch: %d %s", r.status, r.body)
		}
		r = postRPC(t, s.url, auth, `[{"method":"getblockcount","id":1}]`)
		if r.status != 200 || r.body != `[{"result":null,"error":{"code":-9,"message":"upstream node: not reachable"},"id":1}]`+"\n" {
			t.Errorf("forwarded batch: %d %s", r.status, r.body)
		}
	})

	t.Run("wrong credentials", func(t *testing.T) {
		t.Parallel()
		up := newFakeUpstream(t, "up:pw")
		s := startRPC(t, func(c *RPCConfig) {
			c.Upstream = &RPCUpstream{URL: up.srv.URL, User: "up", Password: "wrong"}
		})
		r := postRPC(t, s.url, auth, `{"jsonrpc":"2.0","method":"getblockcount","id":1}`)
		if r.status != 200 || r.body != `{"jsonrpc":"2.0","error":{"code":-1,"message":"upstream node: upstream refused the configured credentials"},"id":1}`+"\n" {
			t.Errorf("%d %s (the client must not see the upstream's 401)", r.status, r.body)
		}
	})

	t.Run("cookie", func(t *testing.T) {
		t.Parallel()
		cookiePath := filepath.Join(t.TempDir(), ".cookie")
		if err := os.WriteFile(cookiePath, []byte("__cookie__:abc\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		up := newFakeUpstream(t, "__cookie__:abc")
		s := startRPC(t, func(c *RPCConfig) {
			c.Upstream = &RPCUpstream{URL: up.srv.URL, CookiePath: cookiePath}
		})
		r := postRPC(t, s.url, auth, `{"method":"getblockcount","id":1}`)
		if r.status != 200 || !strings.Contains(r.body, "up:getblockcount") {
			t.Errorf("%d %s", r.status, r.body)
		}
		// The upstream restarted with a new cookie: read at each call.
		up.mu.Lock()
		up.userPass = "__cookie__:def"
		up.mu.Unlock()
		if err := os.WriteFile(cookiePath, []byte("__cookie__:def"), 0o600); err != nil {
			t.Fatal(err)
		}
		r = postRPC(t, s.url, auth, `{"method":"getblockcount","id":1}`)
		if r.status != 200 || !strings.Contains(r.body, "up:getblockcount") {
			t.Errorf("after new cookie: %d %s", r.status, r.body)
		}
	})
}

// TestRPCCookie checks the cookie file: mode 0600, bitcoind's format, a
// new secret at every start (the old file replaced), removed on Shutdown,
// and usable as credentials.
func TestRPCCookie(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".cookie")
	if err := os.WriteFile(path, []byte("__cookie__:stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for range 2 {
		s, err := NewRPC(RPCConfig{CookiePath: path, Broadcast: (&fakeBroadcaster{}).broadcast})
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("cookie mode %v, want 0600", fi.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cookie := string(b)
		user, secret, _ := strings.Cut(cookie, ":")
		if user != "__cookie__" || len(secret) != 64 || strings.Trim(secret, "0123456789abcdef") != "" {
			t.Errorf("cookie %q, want __cookie__:<64 hex>", cookie)
		}
		for _, old := range seen {
			if old == cookie {
				t.Error("cookie not rewritten at start")
			}
		}
		seen = append(seen, cookie)
		if !s.auth.check(basicAuth(cookie)) {
			t.Error("cookie not accepted")
		}
		if s.auth.check(basicAuth("__cookie__:stale")) {
			t.Error("stale cookie accepted")
		}
		if err := s.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("cookie still there after Shutdown (%v)", err)
		}
		if err := s.Close(); err != nil { // twice is fine
			t.Fatal(err)
		}
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".cookie.tmp*"))
	if len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}
