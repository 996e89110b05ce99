package proxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// rpcMaxHeaderBytes caps a request's header block. bitcoind's libevent
// server allows 8 KiB; a JSON-RPC client sends a handful of short headers.
const rpcMaxHeaderBytes = 16 << 10

// RPCServer is a bitcoind-compatible HTTP JSON-RPC front end: it serves
// sendrawtransaction, getprivatebroadcastinfo and abortprivatebroadcast
// through the funcs in its RPCConfig and forwards every other method to
// the configured upstream node (docs/PROXY.md, "JSON-RPC").
type RPCServer struct {
	cfg    RPCConfig
	log    *slog.Logger
	http   *http.Server
	auth   rpcAuth
	fails  *failLimiter
	up     *upstream     // nil without pass-through
	sem    chan struct{} // one token per request being worked on
	cookie string        // "__cookie__:<hex>" or ""; immutable after NewRPC

	// ctx is every request's base context; cancel aborts calls in progress
	// when Shutdown has to force.
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	addr     net.Addr // guarded by mu; first listener's address
	conns    int      // guarded by mu; open client connections
	stopping bool     // guarded by mu; no new handler may start
	removed  bool     // guarded by mu; cookie file removed

	// handlers counts ServeHTTP calls in progress, so Shutdown and Close
	// return only after the last one (and its func call) has ended. Add
	// happens under mu while stopping is false.
	handlers sync.WaitGroup
}

// NewRPC validates cfg, fills its defaults (see RPCConfig) and, when
// cfg.CookiePath is set, writes a fresh cookie file there (mode 0600,
// replacing an old one), which Shutdown or Close removes. Serve starts
// answering.
func NewRPC(cfg RPCConfig) (*RPCServer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &RPCServer{
		cfg:   cfg,
		log:   cfg.Logger.With("subsys", "rpc"),
		fails: newFailLimiter(cfg.AuthFailures),
		sem:   make(chan struct{}, cfg.MaxConcurrent),
	}
	if cfg.Upstream != nil {
		if s.up, err = newUpstream(cfg.Upstream, cfg.MaxConcurrent); err != nil {
			return nil, err
		}
	}
	if cfg.CookiePath != "" {
		if s.cookie, err = writeRPCCookie(cfg.CookiePath); err != nil {
			return nil, fmt.Errorf("rpc: %w", err)
		}
	}
	var userPass string
	if cfg.User != "" {
		userPass = cfg.User + ":" + cfg.Password
	}
	s.auth = newRPCAuth(userPass, s.cookie)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.http = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cfg.ReadTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		IdleTimeout:       2 * cfg.ReadTimeout,
		MaxHeaderBytes:    rpcMaxHeaderBytes,
		// Only so that net/http resets the write deadline before every
		// request: the real ones are set just before each reply is
		// written (setWriteDeadline), after the call has run.
		WriteTimeout: 24 * time.Hour,
		BaseContext:  func(net.Listener) context.Context { return s.ctx },
		ConnState:    s.connState,
		ErrorLog:     slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// Serve answers JSON-RPC over HTTP on l until Shutdown or Close, then
// returns ErrServerClosed; it closes l. Give it a listener on 127.0.0.1
// (or use ListenAndServe): the RPC port should never face a network.
func (s *RPCServer) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.addr == nil {
		s.addr = l.Addr()
	}
	s.mu.Unlock()
	err := s.http.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		return ErrServerClosed
	}
	return err
}

// ListenAndServe listens on addr ("" means 127.0.0.1:0, a free loopback
// port; Addr tells which) and serves as Serve does.
func (s *RPCServer) ListenAndServe(addr string) error {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Addr returns the address of the first listener Serve was given, or nil.
func (s *RPCServer) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// CookiePath returns the cookie file's path ("" without one).
func (s *RPCServer) CookiePath() string { return s.cfg.CookiePath }

// Shutdown stops accepting, waits for requests in progress until ctx is
// done, then cancels the calls still running and closes their
// connections. It removes the cookie file. It returns ctx.Err() if it had
// to force, nil otherwise; safe to call twice, and after Close.
func (s *RPCServer) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		s.cancel()
		_ = s.http.Close()
	}
	s.finish()
	return err
}

// Close closes the listeners and every connection at once, cancels calls
// in progress, waits for their handlers and removes the cookie file.
func (s *RPCServer) Close() error {
	s.cancel()
	err := s.http.Close()
	s.finish()
	return err
}

// enter counts a handler in, or reports that the server is stopping.
func (s *RPCServer) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.handlers.Add(1)
	return true
}

// finish stops new handlers, cancels and waits for running ones, removes
// the cookie once and drops idle upstream connections.
func (s *RPCServer) finish() {
	s.mu.Lock()
	s.stopping = true
	s.mu.Unlock()
	s.cancel()
	s.handlers.Wait()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up != nil {
		s.up.client.CloseIdleConnections()
	}
	if s.cookie == "" || s.removed {
		return
	}
	s.removed = true
	if err := removeCookie(s.cfg.CookiePath, s.cookie); err != nil {
		s.log.Warn("rpc cookie file not removed", "err", err)
	}
}

// connState enforces MaxConns: a connection beyond it is closed at once.
func (s *RPCServer) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateNew:
		s.conns++
		if s.conns > s.cfg.MaxConns {
			s.log.Debug("rpc connection refused: at MaxConns", "max", s.cfg.MaxConns)
			_ = c.Close() // StateClosed follows and decrements
		}
	case http.StateClosed, http.StateHijacked:
		s.conns--
	}
}

// ServeHTTP answers one HTTP request: POST only, Basic authentication,
// then one JSON-RPC body. Exported so tests and callers can mount it.
func (s *RPCServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	defer s.handlers.Done()
	if r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		_, _ = w.Write([]byte("JSONRPC server handles only POST requests"))
		return
	}
	h, ok := r.Header["Authorization"]
	if !ok || len(h) != 1 || !s.auth.check(h[0]) {
		if ok { // a wrong guess waits for its turn (see failLimiter)
			s.log.Debug("rpc authentication failed")
			_ = s.fails.wait(r.Context())
		}
		w.Header().Set("WWW-Authenticate", wwwAuthenticate)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}

	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-r.Context().Done():
		return
	}

	var body bytes.Buffer
	if r.ContentLength > s.cfg.MaxBody {
		tooLarge(w)
		return
	}
	if _, err := body.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBody)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			tooLarge(w)
		}
		return // read timeout or client gone: nothing to answer
	}
	s.handleBody(r.Context(), w, r.URL.Path, body.Bytes())
}

func tooLarge(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
}

// handleBody answers one JSON-RPC body as bitcoind's HTTPReq_JSONRPC does.
func (s *RPCServer) handleBody(ctx context.Context, w http.ResponseWriter, clientPath string, body []byte) {
	if !json.Valid(body) {
		writeJSON(w, http.StatusInternalServerError, appendRPCReply(nil, rpcV1, nil, false, nil, &RPCError{RPCParseError, "Parse error"}))
		return
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch trimmed[0] {
	case '{':
		s.handleSingle(ctx, w, clientPath, body)
	case '[':
		s.handleBatch(ctx, w, clientPath, body)
	default:
		writeJSON(w, http.StatusInternalServerError, appendRPCReply(nil, rpcV1, nil, false, nil, &RPCError{RPCParseError, "Top-level object parse error"}))
	}
}

// handleSingle answers one request object. A 1.0 error gets bitcoind's
// HTTP status for its code; a 2.0 request gets 200 with the error (but a
// request that does not parse gets the status in both); a 2.0
// notification gets 204 and no body.
func (s *RPCServer) handleSingle(ctx context.Context, w http.ResponseWriter, clientPath string, body []byte) {
	c, rerr := parseCall(body)
	if rerr != nil {
		writeJSON(w, errorStatus(rerr.Code), appendRPCReply(nil, c.version, c.id, c.hasID, nil, rerr))
		return
	}
	var result json.RawMessage
	switch {
	case s.isLocal(c.method):
		result, rerr = s.exec(ctx, &c)
		s.log.Debug("rpc call", "method", c.method, "code", code(rerr))
	case s.up != nil:
		err := s.forward(ctx, w, clientPath, body)
		if err == nil {
			return
		}
		rerr = upstreamError(err)
		s.log.Debug("rpc upstream failed", "code", rerr.Code)
	default:
		rerr = &RPCError{RPCMethodNotFound, "Method not found"}
	}
	switch {
	case c.notification():
		w.WriteHeader(http.StatusNoContent)
	case rerr != nil && c.version == rpcV1:
		writeJSON(w, errorStatus(rerr.Code), appendRPCReply(nil, c.version, c.id, c.hasID, nil, rerr))
	default:
		writeJSON(w, http.StatusOK, appendRPCReply(nil, c.version, c.id, c.hasID, result, rerr))
	}
}

// handleBatch answers an array of requests with 200 and an array of
// replies in request order, without replies to 2.0 notifications (204 if
// that leaves none of a non-empty batch), as bitcoind ≥ 28 does. Local
// calls run here in order; the others go to the upstream, all unchanged in
// one request if no call is local.
func (s *RPCServer) handleBatch(ctx context.Context, w http.ResponseWriter, clientPath string, body []byte) {
	var upErr error // the whole batch was forwarded and that failed
	if s.up != nil && !mayNameLocal(body) {
		// Nothing here can name a local method: the upstream gets the
		// batch as it is, however long, and nothing is parsed.
		if upErr = s.forward(ctx, w, clientPath, body); upErr == nil {
			return
		}
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(body, &elems); err != nil { // valid JSON: cannot fail
		writeJSON(w, http.StatusInternalServerError, appendRPCReply(nil, rpcV1, nil, false, nil, &RPCError{RPCParseError, "Parse error"}))
		return
	}
	if len(elems) > s.cfg.MaxBatch {
		msg := fmt.Sprintf("Batch of %d requests exceeds the limit of %d", len(elems), s.cfg.MaxBatch)
		writeJSON(w, http.StatusBadRequest, appendRPCReply(nil, rpcV1, nil, false, nil, &RPCError{RPCInvalidRequest, msg}))
		return
	}
	calls := make([]rpcCall, len(elems))
	errs := make([]*RPCError, len(elems))
	local, bad := 0, 0
	for i, e := range elems {
		calls[i], errs[i] = parseCall(e)
		switch {
		case errs[i] != nil:
			bad++
		case s.isLocal(calls[i].method):
			local++
		}
	}
	// The batch goes upstream unchanged only if every element parsed: one
	// we refused (a repeated "method", say) may read differently there.
	// (upErr: it already went, having no local name in it at all.)
	if local == 0 && s.up != nil && len(elems) > 0 && (bad == 0 || upErr != nil) {
		err := upErr
		if err == nil {
			if err = s.forward(ctx, w, clientPath, body); err == nil {
				return
			}
		}
		rerr := upstreamError(err)
		for i := range errs {
			if errs[i] == nil {
				errs[i] = rerr
			}
		}
	}

	replies := make([]json.RawMessage, len(elems)) // nil: no reply
	var fwd []int
	for i := range calls {
		c := &calls[i]
		rerr := errs[i]
		var result json.RawMessage
		switch {
		case rerr != nil:
		case s.isLocal(c.method):
			result, rerr = s.exec(ctx, c)
			s.log.Debug("rpc call", "method", c.method, "code", code(rerr), "batch", true)
		case s.up != nil:
			fwd = append(fwd, i)
			continue
		default:
			rerr = &RPCError{RPCMethodNotFound, "Method not found"}
		}
		if !c.notification() {
			replies[i] = appendRPCReply(nil, c.version, c.id, c.hasID, result, rerr)
		}
	}
	if len(fwd) > 0 {
		s.forwardBatch(ctx, clientPath, calls, fwd, replies)
	}

	out := []byte{'['}
	n := 0
	for _, r := range replies {
		if r == nil {
			continue
		}
		if n > 0 {
			out = append(out, ',')
		}
		out = append(out, r...)
		n++
	}
	out = append(out, ']')
	if n == 0 && len(elems) > 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// code is the error code for logs (0: success).
func code(e *RPCError) int {
	if e == nil {
		return 0
	}
	return e.Code
}

// Shapes of the getprivatebroadcastinfo and abortprivatebroadcast results
// in bitcoind v31; node may fill them from the mempool client's state and
// return them from RPCConfig.BroadcastInfo and Abort.
type (
	// PrivateBroadcastInfo is getprivatebroadcastinfo's result.
	PrivateBroadcastInfo struct {
		Transactions []PrivateBroadcastTx `json:"transactions"`
	}
	// PrivateBroadcastTx is one queued transaction.
	PrivateBroadcastTx struct {
		TxID  string                 `json:"txid"`
		WTxID string                 `json:"wtxid"`
		Hex   string                 `json:"hex"`
		Peers []PrivateBroadcastPeer `json:"peers"`
	}
	// PrivateBroadcastPeer is one attempt to hand the transaction over.
	// Address is what bitcoind shows (the peer's address); co-infuse shows
	// the delivery node's peer ID instead, never an IP. Sent and Received
	// are Unix seconds; Received is omitted until the peer acknowledged.
	PrivateBroadcastPeer struct {
		Address  string `json:"address"`
		Sent     int64  `json:"sent"`
		Received *int64 `json:"received,omitempty"`
	}
	// AbortedBroadcast is abortprivatebroadcast's result.
	AbortedBroadcast struct {
		RemovedTransactions []RemovedBroadcastTx `json:"removed_transactions"`
	}
	// RemovedBroadcastTx is one transaction taken out of the queue.
	RemovedBroadcastTx struct {
		TxID  string `json:"txid"`
		WTxID string `json:"wtxid"`
		Hex   string `json:"hex"`
	}
)
