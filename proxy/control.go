package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/co-infuse/co-infuse/internal/onionaddr"
)

// The control port speaks the part of Tor's control protocol
// (control-spec.txt) that Bitcoin Core (src/torcontrol.cpp) and lnd
// (tor/controller.go) use to create onion services: PROTOCOLINFO,
// AUTHCHALLENGE, AUTHENTICATE, GETINFO, ADD_ONION, DEL_ONION, SETEVENTS,
// QUIT. It is protocol only: services are made and removed by the funcs in
// ControlConfig.

// Defaults of ControlConfig.
const (
	// DefaultControlVersion is reported as Tor="…" in PROTOCOLINFO and by
	// GETINFO version. lnd needs four numeric parts and compares the string
	// with "0.3.3.6", so it must look like a real Tor release.
	DefaultControlVersion = "0.4.8.16"
	// DefaultControlMaxConns caps concurrent control connections.
	DefaultControlMaxConns = 64
	// DefaultControlMaxLine caps one command line, CRLF included. Tor allows
	// far more; the longest line a client sends is an ADD_ONION with a key
	// (~100 bytes) and a Port= per listener.
	DefaultControlMaxLine = 8192
	// DefaultControlOnionsPerConn caps services one connection keeps (lnd
	// makes two: the node and its watchtower).
	DefaultControlOnionsPerConn = 16
	// DefaultControlMaxOnions caps the services of all connections
	// together, detached ones included.
	DefaultControlMaxOnions = 64
	// DefaultAddOnionTimeout bounds one AddOnion call.
	DefaultAddOnionTimeout = 30 * time.Second

	controlWriteTimeout = 30 * time.Second
	maxDataBody         = 64 << 10 // bytes of a "+" multi-line command body read and discarded
)

// Errors an AddOnion func wraps so the controller gets Tor's reply; any
// other error is "551 Failed to add Onion Service".
var (
	// ErrOnionCollision: the key's service is already running (550).
	ErrOnionCollision = errors.New("proxy: onion address collision")
	// ErrOnionBadKey: the ED25519-V3 key does not parse (512).
	ErrOnionBadKey = errors.New("proxy: bad onion service key")
	// ErrOnionBadTarget: a port target is refused (512).
	ErrOnionBadTarget = errors.New("proxy: bad onion service port target")
)

// OnionReply is what AddOnion made.
type OnionReply struct {
	// ServiceID is the 56-character id (the address without ".onion").
	ServiceID string
	// PrivateKey is "ED25519-V3:<base64>" for a newly generated key, ""
	// for a given one. The control port drops it when DiscardPK was set.
	PrivateKey string
}

// ControlConfig configures a control port. AddOnion and DelOnion are
// required; with neither NullAuth nor CookiePath nor Password set nobody
// could authenticate, so one of them is required too.
type ControlConfig struct {
	// AddOnion starts a service for req (already checked for form; the
	// func parses the key). ctx is bounded by AddOnionTimeout and ends when
	// the server shuts down. Errors wrap ErrOnionCollision,
	// ErrOnionBadKey or ErrOnionBadTarget where they apply.
	AddOnion func(ctx context.Context, req OnionRequest) (OnionReply, error)
	// DelOnion stops the service with this 56-character id. It is called
	// for DEL_ONION and for every non-detached service of a control
	// connection that closes.
	DelOnion func(id string) error
	// SOCKSListeners lists the SOCKS ports as host:port, for GETINFO
	// net/listeners/socks (Bitcoin Core reads it to find its proxy). Nil
	// answers an empty list.
	SOCKSListeners func() []string

	// NullAuth accepts every AUTHENTICATE (Tor's METHODS=NULL); it
	// excludes CookiePath and Password. Bitcoin Core prefers NULL when
	// offered. Only for a port no other local user can reach.
	NullAuth bool
	// CookiePath enables COOKIE and SAFECOOKIE: a fresh 32-byte cookie is
	// written there (0600) by NewControl; its directory must exist.
	CookiePath string
	// Password enables HASHEDPASSWORD with this password (a secret: never
	// logged). Bitcoin Core's -torpassword and lnd's tor.password.
	Password string

	// Version is the Tor version reported. Default DefaultControlVersion.
	Version string
	// Logger receives debug-level connection outcomes, never keys, service
	// ids or passwords. Default slog.Default().
	Logger *slog.Logger
	// HandshakeTimeout bounds the time from connect to a successful
	// AUTHENTICATE. After it there is no idle timeout: Bitcoin Core and lnd
	// keep the connection open for as long as their service lives.
	// Default 30s.
	HandshakeTimeout time.Duration
	// AddOnionTimeout bounds one AddOnion call. Default 30s.
	AddOnionTimeout time.Duration
	// MaxConns caps concurrent connections; one beyond it is closed at
	// once. Default 64.
	MaxConns int
	// MaxLine caps one command line in bytes; a longer line gets "500 Line
	// too long" and the connection is closed. Default 8192.
	MaxLine int
	// MaxOnionsPerConn caps the services one connection keeps. Default 16.
	MaxOnionsPerConn int
	// MaxOnions caps the services of all connections together (each one
	// holds paid circuits). Default 64.
	MaxOnions int
}

func (c ControlConfig) withDefaults() (ControlConfig, error) {
	switch {
	case c.AddOnion == nil || c.DelOnion == nil:
		return c, errors.New("control config: AddOnion and DelOnion are required")
	case c.NullAuth && (c.CookiePath != "" || c.Password != ""):
		return c, errors.New("control config: NullAuth excludes CookiePath and Password")
	case !c.NullAuth && c.CookiePath == "" && c.Password == "":
		return c, errors.New("control config: no authentication method (set CookiePath, Password or NullAuth)")
	case c.HandshakeTimeout < 0, c.AddOnionTimeout < 0, c.MaxConns < 0, c.MaxLine < 0, c.MaxOnionsPerConn < 0, c.MaxOnions < 0:
		return c, errors.New("control config: negative limit")
	case strings.ContainsAny(c.Version, "\"\\\r\n"):
		return c, errors.New("control config: Version has quotes, backslashes or line breaks")
	}
	if c.Version == "" {
		c.Version = DefaultControlVersion
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HandshakeTimeout == 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.AddOnionTimeout == 0 {
		c.AddOnionTimeout = DefaultAddOnionTimeout
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultControlMaxConns
	}
	if c.MaxLine == 0 {
		c.MaxLine = DefaultControlMaxLine
	}
	if c.MaxLine < 256 {
		c.MaxLine = 256
	}
	if c.MaxOnionsPerConn == 0 {
		c.MaxOnionsPerConn = DefaultControlOnionsPerConn
	}
	if c.MaxOnions == 0 {
		c.MaxOnions = DefaultControlMaxOnions
	}
	return c, nil
}

// ControlServer is a Tor-compatible control port.
type ControlServer struct {
	cfg    ControlConfig
	log    *slog.Logger
	srv    *server
	cookie []byte // nil without CookiePath; never changes after NewControl

	mu sync.Mutex
	// detached are the ids of services added with Flags=Detach; they live
	// until DEL_ONION or Shutdown. Guarded by mu.
	detached []string
	// owned maps every live id this server made to its owner (nil when
	// detached), so DEL_ONION finds it and ADD_ONION sees duplicates.
	// Guarded by mu.
	owned map[string]*controlConn
	// dying counts services of closed connections still being removed;
	// dyingDone is closed when it drops to zero (and then replaced). An
	// ADD_ONION that collides waits for them: a client that reconnects
	// (lnd's Reconnect) re-adds its key at once. Guarded by mu.
	dying     int
	dyingDone chan struct{}
	// adding counts ADD_ONIONs in progress: they hold a place under
	// MaxOnions, so that connections adding at once cannot all pass the
	// check. Guarded by mu.
	adding int
}

// NewControl checks cfg and, with CookiePath, writes a fresh cookie.
func NewControl(cfg ControlConfig) (*ControlServer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &ControlServer{cfg: cfg, log: cfg.Logger.With("subsys", "control"), owned: make(map[string]*controlConn)}
	if cfg.CookiePath != "" {
		if s.cookie, err = writeControlCookie(cfg.CookiePath); err != nil {
			return nil, err
		}
	}
	s.srv = newServer(s.log, cfg.MaxConns, s.serveConn)
	return s, nil
}

// Serve accepts control connections on l until Shutdown (ErrServerClosed)
// or l fails; it closes l. l should be on loopback.
func (s *ControlServer) Serve(l net.Listener) error { return s.srv.serve(l) }

// Addr is the first listener's address, or nil before Serve.
func (s *ControlServer) Addr() net.Addr { return s.srv.listenAddr() }

// CookiePath is where the cookie is, "" without cookie authentication.
func (s *ControlServer) CookiePath() string { return s.cfg.CookiePath }

// Shutdown closes the listeners and every connection at once (a control
// connection never ends by itself), which removes their services, then
// removes the detached services. ctx bounds nothing today; it is there
// for the shape every server here has.
func (s *ControlServer) Shutdown(ctx context.Context) error {
	done, cancel := context.WithCancel(ctx)
	cancel()
	_ = s.srv.shutdown(done) // forced: returns context.Canceled by design
	s.mu.Lock()
	detached := s.detached
	s.detached = nil
	for _, id := range detached {
		delete(s.owned, id)
	}
	s.mu.Unlock()
	for _, id := range detached {
		if err := s.cfg.DelOnion(id); err != nil {
			s.log.Debug("removing a detached service failed", "err", err)
		}
	}
	return nil
}

// controlConn is one control connection; its goroutine owns every field.
type controlConn struct {
	s      *ControlServer
	c      net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	authed bool
	// sentInfo: PROTOCOLINFO was answered before authentication (Tor
	// allows one).
	sentInfo bool
	// clientHash is the SAFECOOKIE hash the next AUTHENTICATE must carry,
	// set by AUTHCHALLENGE.
	clientHash []byte
	// onions are the ids of the services this connection made without
	// Detach; each is also in s.owned.
	onions []string
}

// errCloseConn ends the connection after the reply was written.
var errCloseConn = errors.New("close control connection")

func (s *ControlServer) serveConn(ctx context.Context, c net.Conn) {
	cc := &controlConn{s: s, c: c, br: bufio.NewReaderSize(c, s.cfg.MaxLine), bw: bufio.NewWriter(c)}
	defer cc.dropOnions()
	_ = c.SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	for {
		line, err := cc.readLine()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, errCloseConn) {
				s.log.Debug("control connection ended", "err", err, "authenticated", cc.authed)
			}
			return
		}
		err = cc.handle(ctx, line)
		if ferr := cc.flush(); ferr != nil {
			s.log.Debug("control reply not sent", "err", ferr)
			return
		}
		if err != nil {
			return
		}
	}
}

// readLine returns one line without its CR LF. A line longer than MaxLine
// gets "500 Line too long" and ends the connection.
func (cc *controlConn) readLine() (string, error) {
	b, err := cc.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		cc.writeLine(500, ' ', fmt.Sprintf("Line too long (limit %d bytes)", cc.s.cfg.MaxLine))
		_ = cc.flush()
		return "", errCloseConn
	}
	if err != nil {
		return "", err
	}
	b = bytes.TrimSuffix(b[:len(b)-1], []byte{'\r'})
	return string(b), nil
}

func (cc *controlConn) flush() error {
	if cc.bw.Buffered() == 0 {
		return nil
	}
	_ = cc.c.SetWriteDeadline(time.Now().Add(controlWriteTimeout))
	return cc.bw.Flush()
}

// writeLine writes "<code><sep><text>\r\n"; sep is '-' for a mid-reply
// line, ' ' for the last one, '+' before a data block.
func (cc *controlConn) writeLine(code int, sep byte, text string) {
	cc.bw.WriteString(strconv.Itoa(code))
	cc.bw.WriteByte(sep)
	cc.bw.WriteString(text)
	cc.bw.WriteString("\r\n")
}

func (cc *controlConn) ok() { cc.writeLine(250, ' ', "OK") }

func (cc *controlConn) fail(e *controlError) { cc.writeLine(e.code, ' ', e.msg) }

// handle runs one command line; a non-nil error closes the connection
// after the reply is flushed.
func (cc *controlConn) handle(ctx context.Context, line string) error {
	if strings.HasPrefix(line, "+") {
		// A multi-line command (+LOADCONF, +POSTDESCRIPTOR, +HSPOST): none
		// is supported, but its body must not be read as commands.
		if err := cc.skipBody(); err != nil {
			return err
		}
	}
	cmd := splitCommand(line)
	if !cc.authed && !cc.allowedBeforeAuth(cmd.name) {
		cc.writeLine(514, ' ', "Authentication required.")
		return errCloseConn
	}
	switch cmd.name {
	case "PROTOCOLINFO":
		return cc.protocolInfo(cmd.rest)
	case "AUTHCHALLENGE":
		return cc.authChallenge(cmd.rest)
	case "AUTHENTICATE":
		return cc.authenticate(cmd.rest)
	case "QUIT":
		cc.writeLine(250, ' ', "closing connection")
		return errCloseConn
	case "GETINFO":
		cc.getInfo(cmd.rest)
	case "ADD_ONION":
		cc.addOnion(ctx, cmd.rest)
	case "DEL_ONION":
		cc.delOnion(cmd.rest)
	case "SETEVENTS":
		cc.setEvents(cmd.rest)
	default:
		name, _, _ := strings.Cut(line, " ")
		cc.fail(ctlErr(510, "Unrecognized command %s", quote(name)))
	}
	return nil
}

// skipBody reads a multi-line command's body up to its "." line.
func (cc *controlConn) skipBody() error {
	for n := 0; n < maxDataBody; {
		l, err := cc.readLine()
		if err != nil {
			return err
		}
		if l == "." {
			return nil
		}
		n += len(l) + 2
	}
	cc.writeLine(500, ' ', "Command body too long")
	return errCloseConn
}

// allowedBeforeAuth is tor's is_valid_initial_command.
func (cc *controlConn) allowedBeforeAuth(name string) bool {
	switch name {
	case "PROTOCOLINFO":
		return !cc.sentInfo && cc.clientHash == nil
	case "AUTHCHALLENGE":
		return cc.clientHash == nil
	case "AUTHENTICATE", "QUIT":
		return true
	}
	return false
}

// protocolInfo answers PROTOCOLINFO (control-spec §3.21) as tor does:
//
//	250-PROTOCOLINFO 1
//	250-AUTH METHODS=COOKIE,SAFECOOKIE,HASHEDPASSWORD COOKIEFILE="/path"
//	250-VERSION Tor="0.4.8.16"
//	250 OK
func (cc *controlConn) protocolInfo(rest string) error {
	for _, v := range fields(rest) {
		if _, err := strconv.Atoi(v); err != nil {
			cc.fail(ctlErr(513, "No such version %s", quote(v)))
			return nil
		}
	}
	if !cc.authed {
		cc.sentInfo = true
	}
	cfg := cc.s.cfg
	var methods []string
	if cfg.NullAuth {
		methods = append(methods, "NULL")
	}
	if cc.s.cookie != nil {
		methods = append(methods, "COOKIE", "SAFECOOKIE")
	}
	if cfg.Password != "" {
		methods = append(methods, "HASHEDPASSWORD")
	}
	auth := "AUTH METHODS=" + strings.Join(methods, ",")
	if cc.s.cookie != nil {
		auth += " COOKIEFILE=" + quote(cfg.CookiePath)
	}
	cc.writeLine(250, '-', "PROTOCOLINFO 1")
	cc.writeLine(250, '-', auth)
	cc.writeLine(250, '-', "VERSION Tor="+quote(cfg.Version))
	cc.ok()
	return nil
}

// authChallenge answers "AUTHCHALLENGE SAFECOOKIE <client nonce>" with
// "250 AUTHCHALLENGE SERVERHASH=<hex> SERVERNONCE=<hex>" (control-spec
// §3.24); any failure closes the connection, as in tor.
func (cc *controlConn) authChallenge(rest string) error {
	typ, nonceArg, _ := strings.Cut(strings.TrimLeft(rest, " "), " ")
	if !strings.EqualFold(typ, "SAFECOOKIE") {
		cc.fail(ctlErr(513, "AUTHCHALLENGE only supports SAFECOOKIE authentication"))
		return errCloseConn
	}
	if cc.s.cookie == nil {
		cc.fail(ctlErr(515, "Cookie authentication is disabled"))
		return errCloseConn
	}
	nonceArg = strings.Trim(nonceArg, " ")
	var clientNonce []byte
	if strings.HasPrefix(nonceArg, `"`) {
		v, after, err := unquote(nonceArg)
		if err != nil || strings.Trim(after, " ") != "" {
			cc.fail(ctlErr(513, "Invalid quoted client nonce"))
			return errCloseConn
		}
		clientNonce = []byte(v)
	} else {
		b, err := hex.DecodeString(nonceArg)
		if err != nil {
			cc.fail(ctlErr(513, "Invalid base16 client nonce"))
			return errCloseConn
		}
		clientNonce = b
	}
	if len(clientNonce) == 0 {
		cc.fail(ctlErr(513, "Invalid base16 client nonce"))
		return errCloseConn
	}
	serverNonce := make([]byte, nonceLen)
	if _, err := rand.Read(serverNonce); err != nil {
		cc.fail(ctlErr(551, "Internal error"))
		return errCloseConn
	}
	serverHash, clientHash := safeCookieHashes(cc.s.cookie, clientNonce, serverNonce)
	cc.clientHash = clientHash
	cc.writeLine(250, ' ', "AUTHCHALLENGE SERVERHASH="+strings.ToUpper(hex.EncodeToString(serverHash))+
		" SERVERNONCE="+strings.ToUpper(hex.EncodeToString(serverNonce)))
	return nil
}

// authenticate checks AUTHENTICATE (control-spec §3.5; tor
// handle_control_authenticate): after AUTHCHALLENGE only the SAFECOOKIE
// client hash is accepted; otherwise NULL, the cookie itself (COOKIE) or
// the password. Failure is "515 Authentication failed: …" and the
// connection closes, as in tor.
func (cc *controlConn) authenticate(rest string) error {
	arg, perr := authArg(rest)
	if perr != nil {
		cc.fail(perr)
		return errCloseConn
	}
	cfg := cc.s.cfg
	var ok bool
	var why string
	switch {
	case cc.clientHash != nil:
		ok = subtle.ConstantTimeCompare(arg, cc.clientHash) == 1
		why = "SAFECOOKIE authentication failed"
	case cfg.NullAuth:
		ok = true
	default:
		cookieOK := cc.s.cookie != nil && subtle.ConstantTimeCompare(arg, cc.s.cookie) == 1
		ok = cookieOK || passwordMatches(arg, cfg.Password)
		switch {
		case cc.s.cookie != nil && cfg.Password != "":
			why = "Password did not match HashedControlPassword *or* authentication cookie."
		case cc.s.cookie != nil && len(arg) != cookieLen:
			why = "Wrong length on authentication cookie."
		case cc.s.cookie != nil:
			why = "Authentication cookie did not match expected value."
		default:
			why = "Password did not match HashedControlPassword value from configuration"
		}
	}
	cc.clientHash = nil
	clear(arg)
	if !ok {
		cc.s.log.Debug("control authentication failed")
		cc.fail(ctlErr(515, "Authentication failed: %s", why))
		return errCloseConn
	}
	cc.authed = true
	_ = cc.c.SetReadDeadline(time.Time{})
	cc.ok()
	return nil
}

// getInfo answers GETINFO keys... (control-spec §3.9): one "250-key=value"
// per key, or "250+key=" and a dot-terminated data block for a value of
// several lines (tor's framing; lnd reads both), then "250 OK". Any
// unknown key fails the whole command with 552, as in tor.
func (cc *controlConn) getInfo(rest string) {
	type kv struct{ key, val string }
	var out []kv
	for _, key := range fields(rest) {
		var val string
		switch key {
		case "version":
			val = cc.s.cfg.Version
		case "net/listeners/socks":
			var ls []string
			if f := cc.s.cfg.SOCKSListeners; f != nil {
				for _, a := range f() {
					ls = append(ls, quote(a))
				}
			}
			val = strings.Join(ls, " ")
		case "onions/current", "onions/detached":
			ids := cc.onions
			if key == "onions/detached" {
				cc.s.mu.Lock()
				ids = slices.Clone(cc.s.detached)
				cc.s.mu.Unlock()
			}
			if len(ids) == 0 {
				cc.fail(ctlErr(551, "No onion services of the specified type."))
				return
			}
			val = strings.Join(ids, "\n")
		case "status/bootstrap-phase":
			val = `NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`
		case "status/circuit-established":
			val = "1"
		default:
			cc.fail(ctlErr(552, "Unrecognized key %s", quote(key)))
			return
		}
		out = append(out, kv{key, val})
	}
	for _, a := range out {
		if !strings.Contains(a.val, "\n") {
			cc.writeLine(250, '-', a.key+"="+a.val)
			continue
		}
		cc.writeLine(250, '+', a.key+"=")
		for l := range strings.SplitSeq(a.val, "\n") {
			if strings.HasPrefix(l, ".") {
				l = "." + l
			}
			cc.bw.WriteString(l + "\r\n")
		}
		cc.bw.WriteString(".\r\n")
	}
	cc.ok()
}

// addOnion runs ADD_ONION (control-spec §3.27) and answers as tor does:
//
//	250-ServiceID=<56 chars>
//	250-PrivateKey=ED25519-V3:<base64>   (new key, no DiscardPK)
//	250 OK
func (cc *controlConn) addOnion(ctx context.Context, rest string) {
	req, perr := parseAddOnion(rest)
	if perr != nil {
		cc.fail(perr)
		return
	}
	if !req.Detach && len(cc.onions) >= cc.s.cfg.MaxOnionsPerConn {
		cc.fail(ctlErr(551, "Too many onion services on this connection (at most %d)", cc.s.cfg.MaxOnionsPerConn))
		return
	}
	cc.s.mu.Lock()
	if len(cc.s.owned)+cc.s.dying+cc.s.adding >= cc.s.cfg.MaxOnions {
		cc.s.mu.Unlock()
		cc.fail(ctlErr(551, "Too many onion services (at most %d)", cc.s.cfg.MaxOnions))
		return
	}
	cc.s.adding++
	cc.s.mu.Unlock()
	defer func() { // after the service, if made, is in owned
		cc.s.mu.Lock()
		cc.s.adding--
		cc.s.mu.Unlock()
	}()
	actx, cancel := context.WithTimeout(ctx, cc.s.cfg.AddOnionTimeout)
	rep, err := cc.s.cfg.AddOnion(actx, req)
	if errors.Is(err, ErrOnionCollision) && cc.s.waitDying(actx) {
		rep, err = cc.s.cfg.AddOnion(actx, req)
	}
	cancel()
	switch {
	case errors.Is(err, ErrOnionCollision):
		cc.fail(ctlErr(550, "Onion address collision"))
		return
	case errors.Is(err, ErrOnionBadKey):
		cc.fail(ctlErr(512, "Failed to decode ED25519-V3 key"))
		return
	case errors.Is(err, ErrOnionBadTarget):
		cc.fail(ctlErr(512, "Invalid VIRTPORT/TARGET"))
		return
	case err != nil:
		cc.s.log.Debug("ADD_ONION failed", "err", err)
		cc.fail(ctlErr(551, "Failed to add Onion Service"))
		return
	}
	if _, perr := onionaddr.ParseID(rep.ServiceID); perr != nil || strings.ContainsAny(rep.PrivateKey, " \r\n") {
		// Our own bug, not the controller's: never echo a malformed id.
		cc.s.log.Error("AddOnion returned a malformed service id or key")
		_ = cc.s.cfg.DelOnion(rep.ServiceID)
		cc.fail(ctlErr(551, "Failed to add Onion Service"))
		return
	}
	cc.s.mu.Lock()
	if _, dup := cc.s.owned[rep.ServiceID]; dup {
		// The func should have said ErrOnionCollision; keep the first owner.
		cc.s.mu.Unlock()
		cc.fail(ctlErr(550, "Onion address collision"))
		return
	}
	if req.Detach {
		cc.s.owned[rep.ServiceID] = nil
		cc.s.detached = append(cc.s.detached, rep.ServiceID)
	} else {
		cc.s.owned[rep.ServiceID] = cc
		cc.onions = append(cc.onions, rep.ServiceID)
	}
	cc.s.mu.Unlock()
	cc.writeLine(250, '-', "ServiceID="+rep.ServiceID)
	if rep.PrivateKey != "" && req.NewKey() && !req.DiscardPK {
		cc.writeLine(250, '-', "PrivateKey="+rep.PrivateKey)
	}
	cc.ok()
}

// delOnion runs DEL_ONION <id>: a service of this connection or a
// detached one; any other is 552 (tor's rule: another connection's
// services are not yours to remove).
func (cc *controlConn) delOnion(rest string) {
	args := fields(rest)
	switch {
	case len(args) < 1:
		cc.fail(ctlErr(512, "Bad arguments to DEL_ONION: Need at least 1 argument(s)"))
		return
	case len(args) > 1:
		cc.fail(ctlErr(512, "Bad arguments to DEL_ONION: Cannot accept more than 1 argument(s)"))
		return
	}
	id := args[0]
	if _, err := onionaddr.ParseID(id); err != nil {
		cc.fail(ctlErr(512, "Malformed Onion Service id"))
		return
	}
	cc.s.mu.Lock()
	owner, ok := cc.s.owned[id]
	if !ok || (owner != nil && owner != cc) {
		cc.s.mu.Unlock()
		cc.fail(ctlErr(552, "Unknown Onion Service id"))
		return
	}
	delete(cc.s.owned, id)
	if owner == nil {
		cc.s.detached = slices.DeleteFunc(cc.s.detached, func(x string) bool { return x == id })
	} else {
		cc.onions = slices.DeleteFunc(cc.onions, func(x string) bool { return x == id })
	}
	cc.s.mu.Unlock()
	if err := cc.s.cfg.DelOnion(id); err != nil {
		cc.s.log.Debug("DEL_ONION: removing the service failed", "err", err)
	}
	cc.ok()
}

// dropOnions removes the services this connection made without Detach:
// Tor's ephemeral services die with their control connection, and both
// Bitcoin Core and lnd rely on it.
func (cc *controlConn) dropOnions() {
	s := cc.s
	s.mu.Lock()
	ids := cc.onions
	cc.onions = nil
	for _, id := range ids {
		delete(s.owned, id)
	}
	if len(ids) > 0 {
		if s.dying == 0 {
			s.dyingDone = make(chan struct{})
		}
		s.dying++
	}
	s.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	for _, id := range ids {
		if err := s.cfg.DelOnion(id); err != nil {
			s.log.Debug("removing a closed connection's service failed", "err", err)
		}
	}
	s.mu.Lock()
	if s.dying--; s.dying == 0 {
		close(s.dyingDone)
	}
	s.mu.Unlock()
}

// waitDying waits until no closed connection's services are being
// removed; false if there were none or ctx ended first.
func (s *ControlServer) waitDying(ctx context.Context) bool {
	s.mu.Lock()
	if s.dying == 0 {
		s.mu.Unlock()
		return false
	}
	done := s.dyingDone
	s.mu.Unlock()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// torEvents are the event names tor's SETEVENTS accepts
// (control_events.c control_event_table). co-infuse emits none of them;
// accepting them lets controllers that subscribe carry on.
var torEvents = map[string]bool{
	"CIRC": true, "CIRC_MINOR": true, "STREAM": true, "ORCONN": true, "BW": true,
	"DEBUG": true, "INFO": true, "NOTICE": true, "WARN": true, "ERR": true,
	"NEWDESC": true, "ADDRMAP": true, "DESCCHANGED": true, "NS": true,
	"STATUS_GENERAL": true, "STATUS_CLIENT": true, "STATUS_SERVER": true,
	"GUARD": true, "STREAM_BW": true, "CLIENTS_SEEN": true, "NEWCONSENSUS": true,
	"BUILDTIMEOUT_SET": true, "SIGNAL": true, "CONF_CHANGED": true,
	"TRANSPORT_LAUNCHED": true, "CONN_BW": true, "CIRC_BW": true,
	"CELL_STATS": true, "HS_DESC": true, "HS_DESC_CONTENT": true,
	"NETWORK_LIVENESS": true, "PT_LOG": true, "PT_STATUS": true,
	"EXTENDED": true, "AUTHDIR_NEWDESCS": true,
}

func (cc *controlConn) setEvents(rest string) {
	for _, ev := range fields(rest) {
		if !torEvents[strings.ToUpper(ev)] {
			cc.fail(ctlErr(552, "Unrecognized event %s", quote(ev)))
			return
		}
	}
	cc.ok()
}
