package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/co-infuse/co-infuse/rendezvous"
)

// fakeOnions is the AddOnion/DelOnion pair of a test: real keys
// (rendezvous.GenerateKey/ParseKey), services kept in a map.
type fakeOnions struct {
	mu       sync.Mutex
	live     map[string]OnionRequest // id → request
	removed  []string
	failNext error
	changed  chan struct{} // a value after every removal
}

func newFakeOnions() *fakeOnions {
	return &fakeOnions{live: map[string]OnionRequest{}, changed: make(chan struct{}, 100)}
}

func (f *fakeOnions) add(_ context.Context, req OnionRequest) (OnionReply, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.failNext; err != nil {
		f.failNext = nil
		return OnionReply{}, err
	}
	var k rendezvous.Key
	var err error
	var rep OnionReply
	if req.NewKey() {
		k, err = rendezvous.GenerateKey(rand.Reader)
		rep.PrivateKey = k.String()
	} else {
		k, err = rendezvous.ParseKey(req.KeySpec)
	}
	if err != nil {
		return OnionReply{}, fmt.Errorf("%w: %v", ErrOnionBadKey, err)
	}
	rep.ServiceID = k.ServiceID()
	if _, dup := f.live[rep.ServiceID]; dup {
		return OnionReply{}, ErrOnionCollision
	}
	f.live[rep.ServiceID] = req
	return rep, nil
}

func (f *fakeOnions) del(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.live[id]; !ok {
		return errors.New("unknown")
	}
	delete(f.live, id)
	f.removed = append(f.removed, id)
	select {
	case f.changed <- struct{}{}:
	default: // waitGone re-checks on its next wake-up or the one after
	}
	return nil
}

func (f *fakeOnions) req(id string) OnionRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.live[id]
}

func (f *fakeOnions) has(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.live[id]
	return ok
}

// waitGone waits until id is removed (after a connection closed).
func (f *fakeOnions) waitGone(t *testing.T, id string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for f.has(id) {
		select {
		case <-f.changed:
		case <-ctx.Done():
			t.Fatalf("service %s still live", id)
		}
	}
}

// startControl runs a control port on loopback with the fake backend;
// mod adjusts the config (CookiePath is set in a temp dir unless mod
// clears it).
func startControl(t *testing.T, mod func(*ControlConfig)) (*ControlServer, *fakeOnions) {
	t.Helper()
	f := newFakeOnions()
	cfg := ControlConfig{
		AddOnion:       f.add,
		DelOnion:       f.del,
		SOCKSListeners: func() []string { return []string{"127.0.0.1:9050"} },
		CookiePath:     filepath.Join(t.TempDir(), "control_auth_cookie"),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := NewControl(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctlAddrs.Store(s, ln.Addr().String())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, f
}

// ctlAddrs maps each test server to its listener's address (known before
// Serve runs).
var ctlAddrs sync.Map

// ctlClient is a raw control-port client that keeps every reply line.
type ctlClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialControl(t *testing.T, s *ControlServer) *ctlClient {
	t.Helper()
	addr, _ := ctlAddrs.Load(s)
	c, err := net.Dial("tcp", addr.(string))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return &ctlClient{t: t, c: c, br: bufio.NewReader(c)}
}

// cmd sends line and returns the reply lines (data-block lines included,
// without CRLF) up to the final "NNN " line.
func (k *ctlClient) cmd(line string) []string {
	k.t.Helper()
	if _, err := io.WriteString(k.c, line+"\r\n"); err != nil {
		k.t.Fatalf("send %q: %v", line, err)
	}
	return k.reply()
}

func (k *ctlClient) reply() []string {
	k.t.Helper()
	var out []string
	inData := false
	for {
		l, err := k.br.ReadString('\n')
		if err != nil {
			k.t.Fatalf("read reply: %v (so far %q)", err, out)
		}
		if !strings.HasSuffix(l, "\r\n") {
			k.t.Fatalf("line %q does not end in CRLF", l)
		}
		l = strings.TrimSuffix(l, "\r\n")
		out = append(out, l)
		switch {
		case inData:
			inData = l != "."
		case len(l) >= 4 && l[3] == '+':
			inData = true
		case len(l) >= 4 && l[3] == ' ':
			return out
		}
	}
}

// closed reports whether the server closed the connection (EOF, or a
// reset when it closed with our bytes unread) with nothing more sent.
func (k *ctlClient) closed() bool {
	_ = k.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := k.br.ReadByte()
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func (k *ctlClient) want(line string, want ...string) []string {
	k.t.Helper()
	got := k.cmd(line)
	if !slices.Equal(got, want) {
		k.t.Fatalf("%q:\n got %q\nwant %q", line, got, want)
	}
	return got
}

func (k *ctlClient) auth(s *ControlServer) {
	k.t.Helper()
	cookie, err := os.ReadFile(s.CookiePath())
	if err != nil {
		k.t.Fatal(err)
	}
	k.want("AUTHENTICATE "+hex.EncodeToString(cookie), "250 OK")
}

func TestControlProtocolInfo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mod  func(*ControlConfig)
		auth func(cookie string) string
	}{
		{"cookie", nil, func(c string) string { return `250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=` + quote(c) }},
		{"cookie and password", func(c *ControlConfig) { c.Password = "pw" }, func(c string) string {
			return `250-AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD COOKIEFILE=` + quote(c)
		}},
		{"password", func(c *ControlConfig) { c.CookiePath = ""; c.Password = "pw" }, func(string) string { return "250-AUTH METHODS=HASHEDPASSWORD" }},
		{"null", func(c *ControlConfig) { c.CookiePath = ""; c.NullAuth = true }, func(string) string { return "250-AUTH METHODS=NULL" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, _ := startControl(t, tc.mod)
			k := dialControl(t, s)
			k.want("PROTOCOLINFO 1", "250-PROTOCOLINFO 1", tc.auth(s.CookiePath()), `250-VERSION Tor="0.4.8.16"`, "250 OK")
			// Tor allows one PROTOCOLINFO before authentication.
			k.want("PROTOCOLINFO 1", "514 Authentication required.")
			if !k.closed() {
				t.Error("second PROTOCOLINFO before auth did not close")
			}
		})
	}
}

func TestControlCookieFile(t *testing.T) {
	t.Parallel()
	s, _ := startControl(t, nil)
	fi, err := os.Stat(s.CookiePath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != cookieLen || fi.Mode().Perm() != 0o600 {
		t.Errorf("cookie file: %d bytes, mode %v; want 32, 0600", fi.Size(), fi.Mode().Perm())
	}
	old, _ := os.ReadFile(s.CookiePath())
	// A new server rewrites it.
	s2, err := NewControl(ControlConfig{AddOnion: s.cfg.AddOnion, DelOnion: s.cfg.DelOnion, CookiePath: s.CookiePath()})
	if err != nil {
		t.Fatal(err)
	}
	now, _ := os.ReadFile(s2.CookiePath())
	if string(now) == string(old) {
		t.Error("cookie not rewritten")
	}
	ents, _ := os.ReadDir(filepath.Dir(s.CookiePath()))
	if len(ents) != 1 {
		t.Errorf("cookie dir has %d entries, want 1 (no temp files left)", len(ents))
	}
}

func TestControlConfigErrors(t *testing.T) {
	t.Parallel()
	f := newFakeOnions()
	for name, cfg := range map[string]ControlConfig{
		"no funcs":        {NullAuth: true},
		"no auth":         {AddOnion: f.add, DelOnion: f.del},
		"null and pw":     {AddOnion: f.add, DelOnion: f.del, NullAuth: true, Password: "x"},
		"quote in ver":    {AddOnion: f.add, DelOnion: f.del, NullAuth: true, Version: `0.4"`},
		"negative":        {AddOnion: f.add, DelOnion: f.del, NullAuth: true, MaxLine: -1},
		"no cookie dir":   {AddOnion: f.add, DelOnion: f.del, CookiePath: "/nonexistent/dir/cookie"},
		"negative conns":  {AddOnion: f.add, DelOnion: f.del, NullAuth: true, MaxConns: -1},
		"negative onions": {AddOnion: f.add, DelOnion: f.del, NullAuth: true, MaxOnionsPerConn: -2},
	} {
		if _, err := NewControl(cfg); err == nil {
			t.Errorf("%s: NewControl succeeded", name)
		}
	}
}

// TestControlBeforeAuth: commands other than PROTOCOLINFO, AUTHCHALLENGE,
// AUTHENTICATE and QUIT are refused and the connection closed.
func TestControlBeforeAuth(t *testing.T) {
	t.Parallel()
	s, f := startControl(t, nil)
	for _, line := range []string{"GETINFO version", "ADD_ONION NEW:BEST Port=80", "SETEVENTS", "FOO", "+LOADCONF\r\nx\r\n."} {
		k := dialControl(t, s)
		k.want(line, "514 Authentication required.")
		if !k.closed() {
			t.Errorf("%q: connection not closed", line)
		}
	}
	f.mu.Lock()
	if len(f.live) != 0 {
		t.Error("a service was made before authentication")
	}
	f.mu.Unlock()
	k := dialControl(t, s)
	k.want("QUIT", "250 closing connection")
	if !k.closed() {
		t.Error("QUIT did not close")
	}
}

func TestControlSafeCookie(t *testing.T) {
	t.Parallel()
	s, _ := startControl(t, nil)
	cookie, _ := os.ReadFile(s.CookiePath())
	challenge := func(k *ctlClient) (clientNonce, serverNonce, serverHash []byte) {
		clientNonce = make([]byte, 32)
		rand.Read(clientNonce)
		got := k.cmd("AUTHCHALLENGE SAFECOOKIE " + hex.EncodeToString(clientNonce))
		var sh, sn string
		if len(got) != 1 {
			t.Fatalf("AUTHCHALLENGE reply %q", got)
		}
		if _, err := fmt.Sscanf(got[0], "250 AUTHCHALLENGE SERVERHASH=%s SERVERNONCE=%s", &sh, &sn); err != nil {
			t.Fatalf("AUTHCHALLENGE reply %q: %v", got[0], err)
		}
		serverHash, _ = hex.DecodeString(sh)
		serverNonce, _ = hex.DecodeString(sn)
		if len(serverNonce) != 32 || len(serverHash) != 32 || sh != strings.ToUpper(sh) {
			t.Fatalf("AUTHCHALLENGE reply %q", got[0])
		}
		return
	}

	t.Run("good", func(t *testing.T) {
		k := dialControl(t, s)
		cn, sn, sh := challenge(k)
		if want := hmacSHA256(safeCookieServerKey, cookie, cn, sn); !slices.Equal(sh, want) {
			t.Fatal("server hash is not HMAC(server key, cookie|cnonce|snonce)")
		}
		k.want("AUTHENTICATE "+hex.EncodeToString(hmacSHA256(safeCookieControllerKey, cookie, cn, sn)), "250 OK")
		k.want("GETINFO version", "250-version=0.4.8.16", "250 OK")
	})
	t.Run("wrong hash", func(t *testing.T) {
		k := dialControl(t, s)
		cn, sn, _ := challenge(k)
		bad := hmacSHA256(safeCookieControllerKey, cookie, cn, sn)
		bad[0] ^= 1
		k.want("AUTHENTICATE "+hex.EncodeToString(bad), "515 Authentication failed: SAFECOOKIE authentication failed")
		if !k.closed() {
			t.Error("not closed after a wrong hash")
		}
	})
	t.Run("cookie after challenge", func(t *testing.T) {
		// Once challenged, only the client hash is accepted (tor).
		k := dialControl(t, s)
		challenge(k)
		k.want("AUTHENTICATE "+hex.EncodeToString(cookie), "515 Authentication failed: SAFECOOKIE authentication failed")
		if !k.closed() {
			t.Error("not closed")
		}
	})
	t.Run("wrong cookie", func(t *testing.T) {
		k := dialControl(t, s)
		bad := slices.Clone(cookie)
		bad[31] ^= 0x80
		k.want("AUTHENTICATE "+hex.EncodeToString(bad), "515 Authentication failed: Authentication cookie did not match expected value.")
		if !k.closed() {
			t.Error("not closed after a wrong cookie")
		}
	})
	t.Run("short cookie", func(t *testing.T) {
		k := dialControl(t, s)
		k.want("AUTHENTICATE "+hex.EncodeToString(cookie[:31]), "515 Authentication failed: Wrong length on authentication cookie.")
	})
	t.Run("null refused", func(t *testing.T) {
		k := dialControl(t, s)
		k.want("AUTHENTICATE", "515 Authentication failed: Wrong length on authentication cookie.")
		if !k.closed() {
			t.Error("not closed")
		}
	})
	for name, line := range map[string]string{
		"not safecookie": "AUTHCHALLENGE COOKIE 00",
		"bad nonce":      "AUTHCHALLENGE SAFECOOKIE xyz",
		"empty nonce":    "AUTHCHALLENGE SAFECOOKIE",
	} {
		t.Run(name, func(t *testing.T) {
			k := dialControl(t, s)
			got := k.cmd(line)
			if len(got) != 1 || !strings.HasPrefix(got[0], "513 ") || !k.closed() {
				t.Errorf("%q: %q and not closed", line, got)
			}
		})
	}
	t.Run("twice", func(t *testing.T) {
		k := dialControl(t, s)
		challenge(k)
		k.want("AUTHCHALLENGE SAFECOOKIE 00", "514 Authentication required.")
	})
}

func TestControlPassword(t *testing.T) {
	t.Parallel()
	const pw = `pa ss"w\rd`
	s, _ := startControl(t, func(c *ControlConfig) { c.CookiePath = ""; c.Password = pw })
	for _, tc := range []struct{ name, line, want string }{
		{"quoted, Core's escaping", `AUTHENTICATE "pa ss\"w\\rd"`, "250 OK"},
		{"hex", "AUTHENTICATE " + hex.EncodeToString([]byte(pw)), "250 OK"},
		{"wrong", `AUTHENTICATE "pa ss"`, "515 Authentication failed: Password did not match HashedControlPassword value from configuration"},
		{"empty", `AUTHENTICATE ""`, "515 Authentication failed: Password did not match HashedControlPassword value from configuration"},
		{"none", `AUTHENTICATE`, "515 Authentication failed: Password did not match HashedControlPassword value from configuration"},
		{"unquoted", `AUTHENTICATE password`, "551 Invalid hexadecimal encoding.  Maybe you tried a plain text password?  If so, the standard requires that you put it in double quotes."},
		{"unterminated", `AUTHENTICATE "pw`, "551 Invalid quoted string.  You need to put the password in double quotes."},
		{"trailing", `AUTHENTICATE "pw" x`, "551 Invalid quoted string.  You need to put the password in double quotes."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := dialControl(t, s)
			k.want(tc.line, tc.want)
			if tc.want != "250 OK" && !k.closed() {
				t.Error("not closed after failed authentication")
			}
		})
	}
	t.Run("challenge without cookie", func(t *testing.T) {
		k := dialControl(t, s)
		k.want("AUTHCHALLENGE SAFECOOKIE 00", "515 Cookie authentication is disabled")
		if !k.closed() {
			t.Error("not closed")
		}
	})
}

// TestControlHandshakeTimeout: a connection that never authenticates is
// closed after HandshakeTimeout; an authenticated one is not.
func TestControlHandshakeTimeout(t *testing.T) {
	t.Parallel()
	s, _ := startControl(t, func(c *ControlConfig) { c.HandshakeTimeout = 50 * time.Millisecond })
	k := dialControl(t, s)
	if !k.closed() {
		t.Error("idle unauthenticated connection not closed")
	}
}

func TestControlCommands(t *testing.T) {
	t.Parallel()
	s, f := startControl(t, nil)
	k := dialControl(t, s)
	k.auth(s)
	k.want("GETINFO version net/listeners/socks", "250-version=0.4.8.16", `250-net/listeners/socks="127.0.0.1:9050"`, "250 OK")
	k.want("getinfo version", "250-version=0.4.8.16", "250 OK")
	k.want("GETINFO version nope", `552 Unrecognized key "nope"`)
	k.want("GETINFO onions/current", "551 No onion services of the specified type.")
	k.want("GETINFO status/bootstrap-phase", `250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`, "250 OK")
	k.want("SETEVENTS", "250 OK")
	k.want("SETEVENTS CIRC stream", "250 OK")
	k.want("SETEVENTS NOPE", `552 Unrecognized event "NOPE"`)
	k.want("SIGNAL NEWNYM", `510 Unrecognized command "SIGNAL"`)
	k.want("+LOADCONF\r\nSocksPort 1\r\n.", `510 Unrecognized command "+LOADCONF"`)
	k.want("", `510 Unrecognized command ""`)
	k.want("PROTOCOLINFO", "250-PROTOCOLINFO 1", "250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="+quote(s.CookiePath()), `250-VERSION Tor="0.4.8.16"`, "250 OK")
	k.want("PROTOCOLINFO x", `513 No such version "x"`)

	// ADD_ONION, its replies and errors.
	got := k.cmd("ADD_ONION NEW:BEST Port=80")
	if len(got) != 3 || !strings.HasPrefix(got[0], "250-ServiceID=") || !strings.HasPrefix(got[1], "250-PrivateKey=ED25519-V3:") || got[2] != "250 OK" {
		t.Fatalf("ADD_ONION NEW:BEST: %q", got)
	}
	id1 := strings.TrimPrefix(got[0], "250-ServiceID=")
	key1 := strings.TrimPrefix(got[1], "250-PrivateKey=")
	if req := f.req(id1); req.Ports[0] != (OnionPort{80, "127.0.0.1:80"}) || req.KeySpec != KeySpecNew {
		t.Errorf("request %+v", req)
	}
	k.want("ADD_ONION "+key1+" Port=80", "550 Onion address collision")
	got = k.cmd("ADD_ONION NEW:ED25519-V3 Flags=DiscardPK Port=9735,9736 Port=9735,[::1]:9737 Port=1,localhost:2 ")
	if len(got) != 2 || !strings.HasPrefix(got[0], "250-ServiceID=") {
		t.Fatalf("DiscardPK: %q", got)
	}
	id2 := strings.TrimPrefix(got[0], "250-ServiceID=")
	if p := f.req(id2).Ports; !slices.Equal(p, []OnionPort{{9735, "127.0.0.1:9736"}, {9735, "[::1]:9737"}, {1, "localhost:2"}}) || !f.req(id2).DiscardPK {
		t.Errorf("ports %+v", p)
	}
	got = k.cmd("GETINFO onions/current")
	if want := []string{"250+onions/current=", id1, id2, ".", "250 OK"}; !slices.Equal(got, want) {
		t.Errorf("onions/current: %q, want %q", got, want)
	}
	for line, want := range map[string]string{
		"ADD_ONION":                                      "512 Bad arguments to ADD_ONION: Need at least 1 argument(s)",
		"ADD_ONION NEW:BEST":                             "512 Missing 'Port' argument",
		"ADD_ONION NEW:BEST Port=0":                      "512 Invalid VIRTPORT/TARGET",
		"ADD_ONION NEW:BEST Port=65536":                  "512 Invalid VIRTPORT/TARGET",
		"ADD_ONION NEW:BEST Port=80,example.com:80":      "512 Invalid VIRTPORT/TARGET",
		"ADD_ONION NEW:BEST Port=80,unix:/tmp/s":         "512 Invalid VIRTPORT/TARGET",
		"ADD_ONION NEW:BEST Port=80,127.0.0.1:0":         "512 Invalid VIRTPORT/TARGET",
		"ADD_ONION NEW:BEST Port=":                       "512 Invalid VIRTPORT/TARGET",
		"ADD_ONION NEW:RSA1024 Port=80":                  "513 Invalid key type",
		"ADD_ONION RSA1024:abcd Port=80":                 "513 Invalid key type",
		"ADD_ONION BEST Port=80":                         "512 Invalid key type/blob",
		"ADD_ONION ED25519-V3:AAAA Port=80":              "512 Failed to decode ED25519-V3 key",
		"ADD_ONION NEW:BEST Port=80 Flags=Bogus":         `512 Invalid 'Flags' argument: "Bogus"`,
		"ADD_ONION NEW:BEST Port=80 Flags=":              "512 Invalid 'Flags' argument",
		"ADD_ONION NEW:BEST Port=80 Flags=V3Auth":        "512 Invalid client authorization",
		"ADD_ONION NEW:BEST Port=80 Flags=NonAnonymous":  "512 Tor is in anonymous hidden service mode",
		"ADD_ONION NEW:BEST Port=80 MaxStreams=70000":    "512 Invalid MaxStreams",
		"ADD_ONION NEW:BEST Port=80 Bogus=1":             `512 Bad arguments to ADD_ONION: Unrecognized keyword argument "Bogus"`,
		"ADD_ONION NEW:BEST Port=80 PoWDefensesEnabled=": "512 Invalid PoWDefensesEnabled",
	} {
		k.want(line, want)
	}
	f.mu.Lock()
	f.failNext = errors.New("no circuits")
	f.mu.Unlock()
	k.want("ADD_ONION NEW:BEST Port=80", "551 Failed to add Onion Service")
	// Accepted extras.
	got = k.cmd("ADD_ONION NEW:BEST Port=80 MaxStreams=10 Flags=MaxStreamsCloseCircuit,Detach PoWDefensesEnabled=1")
	if len(got) != 3 {
		t.Fatalf("extras: %q", got)
	}
	id3 := strings.TrimPrefix(got[0], "250-ServiceID=")
	if r := f.req(id3); !r.Detach || !r.PoW || r.MaxStreams != 10 {
		t.Errorf("request %+v", r)
	}
	k.want("GETINFO onions/detached", "250-onions/detached="+id3, "250 OK")

	// DEL_ONION.
	k.want("DEL_ONION", "512 Bad arguments to DEL_ONION: Need at least 1 argument(s)")
	k.want("DEL_ONION a b", "512 Bad arguments to DEL_ONION: Cannot accept more than 1 argument(s)")
	k.want("DEL_ONION abc", "512 Malformed Onion Service id")
	k.want("DEL_ONION 25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid", "552 Unknown Onion Service id")
	k.want("DEL_ONION "+id2, "250 OK")
	k.want("DEL_ONION "+id2, "552 Unknown Onion Service id")
	if f.has(id2) {
		t.Error("DEL_ONION left the service")
	}
	k.want("GETINFO onions/current", "250-onions/current="+id1, "250 OK")

	// Another connection may not remove id1, but may remove the detached id3.
	k2 := dialControl(t, s)
	k2.auth(s)
	k2.want("DEL_ONION "+id1, "552 Unknown Onion Service id")
	k2.want("GETINFO onions/current", "551 No onion services of the specified type.")
	k2.want("GETINFO onions/detached", "250-onions/detached="+id3, "250 OK")

	// Closing k removes id1; the detached id3 stays.
	k.want("QUIT", "250 closing connection")
	f.waitGone(t, id1)
	if !f.has(id3) {
		t.Error("detached service removed with its connection")
	}
	k2.want("DEL_ONION "+id3, "250 OK")
	if f.has(id3) {
		t.Error("detached service not removed")
	}
	// The saved key brings the same address back, without PrivateKey.
	k2.want("ADD_ONION "+key1+" Port=80", "250-ServiceID="+id1, "250 OK")
}

func TestControlLimits(t *testing.T) {
	t.Parallel()
	s, _ := startControl(t, func(c *ControlConfig) { c.MaxLine = 300; c.MaxConns = 2; c.MaxOnionsPerConn = 1 })
	k := dialControl(t, s)
	k.auth(s)
	k.cmd("ADD_ONION NEW:BEST Port=80")
	k.want("ADD_ONION NEW:BEST Port=80", "551 Too many onion services on this connection (at most 1)")
	k.want("GETINFO "+strings.Repeat("x", 400), "500 Line too long (limit 300 bytes)")
	if !k.closed() {
		t.Error("not closed after a long line")
	}
	// MaxConns: two held, the third closed at once.
	a, b := dialControl(t, s), dialControl(t, s)
	a.want("PROTOCOLINFO 1", "250-PROTOCOLINFO 1", "250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="+quote(s.CookiePath()), `250-VERSION Tor="0.4.8.16"`, "250 OK")
	b.want("PROTOCOLINFO 1", "250-PROTOCOLINFO 1", "250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE="+quote(s.CookiePath()), `250-VERSION Tor="0.4.8.16"`, "250 OK")
	c := dialControl(t, s)
	if !c.closed() {
		t.Error("connection beyond MaxConns not closed")
	}
}

func TestControlMaxOnions(t *testing.T) {
	t.Parallel()
	s, _ := startControl(t, func(c *ControlConfig) { c.MaxOnions = 2 })
	k := dialControl(t, s)
	k.auth(s)
	k.cmd("ADD_ONION NEW:BEST Port=80")
	k.cmd("ADD_ONION NEW:BEST Port=80 Flags=Detach")
	k.want("ADD_ONION NEW:BEST Port=80", "551 Too many onion services (at most 2)")
	k2 := dialControl(t, s)
	k2.auth(s)
	k2.want("ADD_ONION NEW:BEST Port=80 Flags=Detach", "551 Too many onion services (at most 2)")
}

// TestControlShutdown: Shutdown closes live connections and removes every
// service, detached ones too.
func TestControlShutdown(t *testing.T) {
	t.Parallel()
	s, f := startControl(t, nil)
	k := dialControl(t, s)
	k.auth(s)
	k.cmd("ADD_ONION NEW:BEST Port=80")
	k.cmd("ADD_ONION NEW:BEST Port=81 Flags=Detach")
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !k.closed() {
		t.Error("connection open after Shutdown")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.live) != 0 || len(f.removed) != 2 {
		t.Errorf("after Shutdown: %d live, %d removed", len(f.live), len(f.removed))
	}
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`/var/lib/tor/control_auth_cookie`: `"/var/lib/tor/control_auth_cookie"`,
		`C:\tor\"x"`:                       `"C:\\tor\\\"x\""`,
		"a\nb\r\tc\x01\xff":                `"a\nb\r\tc\001\377"`,
	} {
		if got := quote(in); got != want {
			t.Errorf("quote(%q) = %s, want %s", in, got, want)
		}
		back, rest, err := unquote(quote(in))
		if err != nil || back != in || rest != "" {
			t.Errorf("unquote(quote(%q)) = %q, %q, %v", in, back, rest, err)
		}
	}
	for _, bad := range []string{``, `x`, `"abc`, `"a\`, `"\400"`, "\"a\nb\""} {
		if _, _, err := unquote(bad); err == nil {
			t.Errorf("unquote(%q) succeeded", bad)
		}
	}
}

// TestControlMaxOnionsConcurrent: an ADD_ONION still running counts
// against MaxOnions, so controllers on several connections cannot each
// pass the check while the others' services are being made.
func TestControlMaxOnionsConcurrent(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	var calls sync.Mutex
	n := 0
	s, f := startControl(t, func(c *ControlConfig) {
		c.MaxOnions = 1
		add := c.AddOnion
		c.AddOnion = func(ctx context.Context, req OnionRequest) (OnionReply, error) {
			calls.Lock()
			n++
			first := n == 1
			calls.Unlock()
			if first {
				close(entered)
				<-release
			}
			return add(ctx, req)
		}
	})
	_ = f
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free) // before Shutdown (cleanups run last-in first-out)
	a := dialControl(t, s)
	a.auth(s)
	if _, err := io.WriteString(a.c, "ADD_ONION NEW:BEST Port=80\r\n"); err != nil {
		t.Fatal(err)
	}
	<-entered
	b := dialControl(t, s)
	b.auth(s)
	b.want("ADD_ONION NEW:BEST Port=80", "551 Too many onion services (at most 1)")
	free()
	if r := a.reply(); !strings.HasPrefix(r[0], "250-ServiceID=") {
		t.Fatalf("first ADD_ONION: %q", r)
	}
}
