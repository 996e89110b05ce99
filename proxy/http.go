package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/circuit/cell"
)

// maxHTTPHead caps the request line and headers of a CONNECT request.
const maxHTTPHead = 16 << 10

// HTTPConnectServer is an HTTP CONNECT tunnel like Tor's HTTPTunnelPort:
// "CONNECT host:port" opens a stream through Dial and then carries raw
// bytes. It is not a web proxy: any other method gets 405. Basic
// Proxy-Authorization credentials become the stream's Isolation.
type HTTPConnectServer struct {
	cfg Config
	log *slog.Logger
	srv *server
}

// NewHTTPConnect returns an HTTP CONNECT server; cfg.Dial is required and
// cfg.Resolve is not used.
func NewHTTPConnect(cfg Config) (*HTTPConnectServer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &HTTPConnectServer{cfg: cfg, log: cfg.Logger.With("subsys", "httptunnel")}
	s.srv = newServer(s.log, cfg.MaxConns, s.serveConn)
	return s, nil
}

// Serve accepts clients on l until l fails or the server shuts down, and
// closes l. It returns ErrServerClosed after Shutdown or Close.
func (s *HTTPConnectServer) Serve(l net.Listener) error { return s.srv.serve(l) }

// Shutdown stops accepting, waits for open tunnels to end until ctx is
// done, then closes them; it returns ctx.Err() if it had to force.
func (s *HTTPConnectServer) Shutdown(ctx context.Context) error { return s.srv.shutdown(ctx) }

// Close is Shutdown without waiting.
func (s *HTTPConnectServer) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.srv.shutdown(ctx)
	return nil
}

// Addr is the address of the first listener passed to Serve, or nil.
func (s *HTTPConnectServer) Addr() net.Addr { return s.srv.listenAddr() }

func (s *HTTPConnectServer) serveConn(ctx context.Context, c net.Conn) {
	if err := s.tunnel(ctx, c); err != nil {
		s.log.Debug("HTTP CONNECT ended", "err", err)
	}
}

func (s *HTTPConnectServer) tunnel(ctx context.Context, c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	lr := &io.LimitedReader{R: c, N: maxHTTPHead}
	br := bufio.NewReader(lr)
	req, err := http.ReadRequest(br)
	if err != nil {
		if lr.N == 0 {
			return httpError(c, http.StatusRequestHeaderFieldsTooLarge, "request head too large", err)
		}
		var ne net.Error
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) && ne.Timeout() {
			return errors.New("proxy: client left or stalled during the request head")
		}
		return httpError(c, http.StatusBadRequest, "malformed request", errors.New("proxy: malformed HTTP request"))
	}
	if req.Method != http.MethodConnect {
		return httpError(c, http.StatusMethodNotAllowed,
			"only CONNECT host:port is supported: this is a tunnel, not a web proxy",
			fmt.Errorf("method %.16q", req.Method))
	}
	target, err := parseAuthority(req.RequestURI)
	if err != nil {
		return httpError(c, http.StatusBadRequest, "CONNECT target must be host:port", ErrBadTarget)
	}
	iso, err := proxyAuthorization(req.Header)
	if err != nil {
		return httpError(c, http.StatusBadRequest, "Proxy-Authorization must be Basic base64(user:pass)", err)
	}
	lr.N = math.MaxInt64 // head done: what follows is tunnel payload
	_ = c.SetDeadline(time.Time{})
	dctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	up, err := s.cfg.Dial(dctx, iso, target)
	cancel()
	if err != nil {
		// Dial errors may name the destination; only the status is logged.
		code, reason := httpStatus(err)
		return httpError(c, code, reason, fmt.Errorf("%w: status %d", errStreamFailed, code))
	}
	defer up.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return err
	}
	pipe(c, br, up)
	return nil
}

// parseAuthority parses a CONNECT authority "host:port" (IPv6 in
// brackets) with the target grammar. Errors wrap ErrBadTarget.
func parseAuthority(s string) (cell.Target, error) {
	t, err := cell.ParseTarget(s)
	if err != nil {
		return cell.Target{}, fmt.Errorf("%w: %w", ErrBadTarget, err)
	}
	return t, nil
}

// httpStatus maps a Dial error to a status and a one-line reason.
func httpStatus(err error) (int, string) {
	switch {
	case errors.Is(err, ErrBadTarget):
		return http.StatusBadRequest, "malformed target"
	case errors.Is(err, ErrOnionNotFound), replyCodeIs(err, repOnionDescNotFound):
		// The service is not found (404), not a failed gateway (502);
		// also when a Tor gateway's tor found no descriptor.
		return http.StatusNotFound, "onion service not found"
	case errors.Is(err, circuit.ErrExitPolicy):
		return http.StatusForbidden, "refused by the exit policy"
	case errors.Is(err, circuit.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timed out"
	case errors.Is(err, circuit.ErrConnRefused):
		return http.StatusBadGateway, "connection refused by the target"
	case errors.Is(err, circuit.ErrUnreachable):
		return http.StatusBadGateway, "target unreachable"
	case errors.Is(err, circuit.ErrResolveFailed):
		return http.StatusBadGateway, "could not resolve the target host"
	case errors.Is(err, circuit.ErrResourceLimit):
		return http.StatusServiceUnavailable, "no capacity on the circuit"
	case errors.Is(err, circuit.ErrPayment):
		return http.StatusBadGateway, "payment for the circuit failed"
	default:
		return http.StatusBadGateway, "could not open a stream"
	}
}

// proxyAuthorization reads Basic credentials; no header is the zero
// Isolation.
func proxyAuthorization(h http.Header) (Isolation, error) {
	v := h.Get("Proxy-Authorization")
	if v == "" {
		return Isolation{}, nil
	}
	scheme, enc, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return Isolation{}, errors.New("proxy: Proxy-Authorization is not Basic")
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return Isolation{}, fmt.Errorf("proxy: Proxy-Authorization: %w", err)
	}
	user, pass, ok := strings.Cut(string(raw), ":")
	if !ok {
		return Isolation{}, errors.New("proxy: Proxy-Authorization lacks ':'")
	}
	return Isolation{Username: user, Password: pass}, nil
}

// httpError writes a short plain-text error response and returns cause.
func httpError(w io.Writer, code int, reason string, cause error) error {
	body := reason + "\n"
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n",
		code, http.StatusText(code), len(body))
	if code == http.StatusMethodNotAllowed {
		head += "Allow: CONNECT\r\n"
	}
	if _, err := io.WriteString(w, head+"\r\n"+body); err != nil {
		return fmt.Errorf("write HTTP error: %w", err)
	}
	return cause
}
