package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	socks5 "github.com/things-go/go-socks5"
	"github.com/things-go/go-socks5/statute"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// SOCKSServer is a SOCKS5 server with Tor's behaviour towards bitcoind, lnd
// and curl: CONNECT to domain, IPv4 and IPv6 targets with no local DNS,
// username/password chosen whenever offered (any pair is accepted and
// becomes the stream's Isolation), no-auth otherwise, and Tor's RESOLVE
// extension. BIND and UDP ASSOCIATE are answered "command not supported".
type SOCKSServer struct {
	cfg Config
	log *slog.Logger
	lib *socks5.Server
	srv *server
}

// NewSOCKS returns a SOCKS5 server; cfg.Dial is required (see Config for
// defaults). Call Serve to accept connections.
func NewSOCKS(cfg Config) (*SOCKSServer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &SOCKSServer{cfg: cfg, log: cfg.Logger.With("subsys", "socks")}
	s.lib = socks5.NewServer(
		// Server order decides: user/pass first, so it wins whenever the
		// client offers it (INTEROP.md §1.5).
		socks5.WithAuthMethods([]socks5.Authenticator{
			resolvingAuth{inner: socks5.UserPassAuthenticator{Credentials: anyCredentials{}}, srv: s},
			resolvingAuth{inner: socks5.NoAuthAuthenticator{}, srv: s},
		}),
		socks5.WithResolver(noLocalDNS{}),
		socks5.WithConnectHandle(s.handleConnect),
		socks5.WithBindHandle(refuseCommand),
		socks5.WithAssociateHandle(refuseCommand),
		socks5.WithLogger(libLogger{s.log}),
	)
	s.srv = newServer(s.log, cfg.MaxConns, s.serveConn)
	return s, nil
}

// Serve accepts SOCKS clients on l until l fails or the server shuts down,
// and closes l. It returns ErrServerClosed after Shutdown or Close. It may
// be called for several listeners at once.
func (s *SOCKSServer) Serve(l net.Listener) error { return s.srv.serve(l) }

// Shutdown stops accepting, waits for open connections to end until ctx is
// done, then aborts dials in progress and closes the rest; it returns
// ctx.Err() if it had to force. Safe to call more than once.
func (s *SOCKSServer) Shutdown(ctx context.Context) error { return s.srv.shutdown(ctx) }

// Close is Shutdown without waiting: every connection is closed at once.
func (s *SOCKSServer) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.srv.shutdown(ctx)
	return nil
}

// Addr is the address of the first listener passed to Serve, or nil.
func (s *SOCKSServer) Addr() net.Addr { return s.srv.listenAddr() }

// socksConn is the conn handed to the library. The library passes it back
// to our handlers as their writer, which is how they find the connection's
// context.
type socksConn struct {
	net.Conn
	ctx context.Context // cancelled on forced shutdown
}

func (s *SOCKSServer) serveConn(ctx context.Context, c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	err := s.lib.ServeConn(&socksConn{Conn: c, ctx: ctx})
	switch {
	case err == nil, errors.Is(err, errResolveServed):
	default:
		s.log.Debug("SOCKS connection ended", "err", err)
	}
}

// handleConnect serves CONNECT after the library parsed the request. The
// library passes our socksConn as w and its buffered reader as req.Reader.
func (s *SOCKSServer) handleConnect(_ context.Context, w io.Writer, req *socks5.Request) error {
	sc, ok := w.(*socksConn)
	if !ok {
		_ = writeReply(w, repGeneralFailure, netip.Addr{}, nil)
		return errors.New("proxy: internal: SOCKS writer is not ours")
	}
	target, err := requestTarget(req.RawDestAddr)
	if err != nil {
		return writeReply(sc, replyCode(err), netip.Addr{}, ErrBadTarget)
	}
	onion := target.IsOnion()
	if onion && !validOnionV3(target.Host()) {
		// Tor refuses a malformed onion address before building anything.
		return writeReply(sc, repOnionBadAddress, netip.Addr{}, ErrBadTarget)
	}
	// The handshake is over; the dial has its own timeout.
	_ = sc.SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(sc.ctx, s.cfg.ConnectTimeout)
	up, err := s.cfg.Dial(ctx, isolationOf(req.AuthContext), target)
	cancel()
	if err != nil {
		// Dial errors may name the destination; only the code is logged.
		code := replyCode(err)
		if oc, ok := onionReplyCode(err); ok && onion {
			code = oc
		}
		return writeReply(sc, code, netip.Addr{}, fmt.Errorf("%w: reply 0x%02x", errStreamFailed, code))
	}
	defer up.Close()
	if err := writeReply(sc, repSucceeded, netip.Addr{}, nil); err != nil {
		return err
	}
	pipe(sc.Conn, req.Reader, up)
	return nil
}

// requestTarget parses the client's destination into a cell.Target: a
// DOMAINNAME through the target grammar (bitcoind sends IP literals, IPv6
// ones without brackets, this way), an IPv4 or IPv6 address as that literal
// (an IPv4-mapped IPv6 address becomes IPv4). Errors wrap ErrBadTarget.
func requestTarget(a *statute.AddrSpec) (cell.Target, error) {
	if a == nil {
		return cell.Target{}, fmt.Errorf("%w: no address", ErrBadTarget)
	}
	if a.Port < 1 || a.Port > 65535 {
		return cell.Target{}, fmt.Errorf("%w: port %d", ErrBadTarget, a.Port)
	}
	var host string
	switch a.AddrType {
	case statute.ATYPDomain:
		host = a.FQDN
	case statute.ATYPIPv4:
		ip, ok := netip.AddrFromSlice(a.IP.To4())
		if !ok {
			return cell.Target{}, fmt.Errorf("%w: IPv4 address", ErrBadTarget)
		}
		host = ip.String()
	case statute.ATYPIPv6:
		ip, ok := netip.AddrFromSlice(a.IP.To16())
		if !ok {
			return cell.Target{}, fmt.Errorf("%w: IPv6 address", ErrBadTarget)
		}
		host = ip.String()
	default:
		return cell.Target{}, fmt.Errorf("%w: address type %d", ErrBadTarget, a.AddrType)
	}
	t, err := cell.NewTarget(host, uint16(a.Port))
	if err != nil {
		return cell.Target{}, fmt.Errorf("%w: %w", ErrBadTarget, err)
	}
	return t, nil
}

// isolationOf turns the library's auth result into an Isolation.
func isolationOf(ac *socks5.AuthContext) Isolation {
	if ac == nil || ac.Method != statute.MethodUserPassAuth {
		return Isolation{}
	}
	return Isolation{Username: ac.Payload["username"], Password: ac.Payload["password"]}
}

// refuseCommand answers BIND and UDP ASSOCIATE: a circuit carries TCP
// streams only.
func refuseCommand(_ context.Context, w io.Writer, _ *socks5.Request) error {
	return writeReply(w, repCommandNotSupported, netip.Addr{}, errors.New("proxy: command not supported"))
}

// anyCredentials accepts every username/password pair: the pair is an
// isolation key, not a secret (Tor's IsolateSOCKSAuth).
type anyCredentials struct{}

func (anyCredentials) Valid(string, string, string) bool { return true }

// noLocalDNS replaces the library's resolver, which would look every
// DOMAINNAME up in the local DNS and leak it. It leaves the name as it is;
// the exit resolves it.
type noLocalDNS struct{}

func (noLocalDNS) Resolve(ctx context.Context, _ string) (context.Context, net.IP, error) {
	return ctx, nil, nil
}

// libLogger forwards the library's messages at debug level without their
// arguments, which may hold destinations.
type libLogger struct{ log *slog.Logger }

func (l libLogger) Errorf(format string, _ ...any) {
	l.log.Debug("go-socks5", "format", format)
}
