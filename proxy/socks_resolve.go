package proxy

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	socks5 "github.com/things-go/go-socks5"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// Wire constants (RFC 1928 §4–5; Tor's socks-extensions.txt §2 for RESOLVE).
const (
	socksVersion  byte = 0x05
	cmdResolve    byte = 0xF0 // Tor extension: resolve a host name, no stream
	atypIPv4      byte = 0x01
	atypDomain    byte = 0x03
	atypIPv6      byte = 0x04
	maxResolveLen      = 4 + 1 + 255 + 2 // header, length byte, longest name, port
)

// errResolveServed ends the library's handling of a connection whose
// RESOLVE request this package has already answered; it is not a failure.
var errResolveServed = errors.New("proxy: RESOLVE answered")

// errStreamFailed is what the logs see of a failed Dial or Resolve: the
// reply code, never the error text, which may name the destination.
var errStreamFailed = errors.New("proxy: stream failed")

// errMalformed marks a RESOLVE request that breaks the wire format.
var errMalformed = errors.New("proxy: malformed SOCKS request")

// resolveRequest is Tor's RESOLVE: VER=5 CMD=0xF0 RSV=0 ATYP DST.ADDR
// DST.PORT, the CONNECT layout with another command. Clients send ATYP 3
// and port 0 (btcd connmgr.TorLookupIP); IP literals are accepted and
// answered as they are, as Tor does.
type resolveRequest struct {
	Atyp byte   // atypIPv4, atypDomain or atypIPv6
	Host string // the name, or the literal's text form
	Port uint16 // ignored, kept for round trips
}

// parseResolveRequest decodes one complete RESOLVE request. It checks every
// field and refuses trailing bytes.
func parseResolveRequest(b []byte) (resolveRequest, error) {
	var r resolveRequest
	if len(b) < 4 {
		return r, fmt.Errorf("%w: short header", errMalformed)
	}
	if b[0] != socksVersion || b[1] != cmdResolve || b[2] != 0 {
		return r, fmt.Errorf("%w: header % x", errMalformed, b[:3])
	}
	r.Atyp, b = b[3], b[4:]
	var addrLen int
	switch r.Atyp {
	case atypIPv4:
		addrLen = 4
	case atypIPv6:
		addrLen = 16
	case atypDomain:
		if len(b) < 1 || b[0] == 0 {
			return r, fmt.Errorf("%w: empty domain", errMalformed)
		}
		addrLen, b = int(b[0]), b[1:]
	default:
		return r, fmt.Errorf("%w: address type %d", errMalformed, r.Atyp)
	}
	if len(b) != addrLen+2 {
		return r, fmt.Errorf("%w: length %d, want %d", errMalformed, len(b), addrLen+2)
	}
	switch r.Atyp {
	case atypIPv4:
		r.Host = netip.AddrFrom4([4]byte(b[:4])).String()
	case atypIPv6:
		r.Host = netip.AddrFrom16([16]byte(b[:16])).String()
	default:
		r.Host = string(b[:addrLen])
	}
	r.Port = binary.BigEndian.Uint16(b[addrLen:])
	return r, nil
}

// appendBinary encodes r; it fails if Host does not fit Atyp.
func (r resolveRequest) appendBinary(b []byte) ([]byte, error) {
	b = append(b, socksVersion, cmdResolve, 0, r.Atyp)
	switch r.Atyp {
	case atypIPv4, atypIPv6:
		a, err := netip.ParseAddr(r.Host)
		if err != nil || a.Zone() != "" || (r.Atyp == atypIPv4) != a.Is4() {
			return nil, fmt.Errorf("%w: host does not fit address type", errMalformed)
		}
		b = append(b, a.AsSlice()...)
	case atypDomain:
		if r.Host == "" || len(r.Host) > 255 {
			return nil, fmt.Errorf("%w: domain length", errMalformed)
		}
		b = append(b, byte(len(r.Host)))
		b = append(b, r.Host...)
	default:
		return nil, fmt.Errorf("%w: address type %d", errMalformed, r.Atyp)
	}
	return binary.BigEndian.AppendUint16(b, r.Port), nil
}

// readResolveRequest reads exactly one RESOLVE request from br, at most
// maxResolveLen bytes, and returns its bytes. An unknown address type
// returns the four header bytes for the parser to refuse.
func readResolveRequest(br *bufio.Reader) ([]byte, error) {
	buf := make([]byte, maxResolveLen)
	if _, err := io.ReadFull(br, buf[:4]); err != nil {
		return nil, err
	}
	have, n := 4, 0
	switch buf[3] {
	case atypIPv4:
		n = 4 + 4 + 2
	case atypIPv6:
		n = 4 + 16 + 2
	case atypDomain:
		if _, err := io.ReadFull(br, buf[4:5]); err != nil {
			return nil, err
		}
		have, n = 5, 5+int(buf[4])+2
	default:
		return buf[:4], nil
	}
	if _, err := io.ReadFull(br, buf[have:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// resolvingAuth wraps one of the library's authenticators. After the
// method sub-negotiation succeeds it peeks at the request header on the
// library's buffered reader: a RESOLVE is answered here, everything else
// is left in the buffer for the library to parse as usual. Returning
// errResolveServed makes the library close the connection, which is what
// Tor does after a RESOLVE reply.
type resolvingAuth struct {
	inner socks5.Authenticator
	srv   *SOCKSServer
}

func (a resolvingAuth) GetCode() uint8 { return a.inner.GetCode() }

func (a resolvingAuth) Authenticate(r io.Reader, w io.Writer, userAddr string) (*socks5.AuthContext, error) {
	ac, err := a.inner.Authenticate(r, w, userAddr)
	if err != nil || a.srv.cfg.Resolve == nil {
		return ac, err
	}
	br, ok := r.(*bufio.Reader)
	if !ok {
		return ac, nil // library changed: RESOLVE falls through to "command not supported"
	}
	hdr, err := br.Peek(2)
	if err != nil || hdr[0] != socksVersion || hdr[1] != cmdResolve {
		return ac, nil // not RESOLVE (or the client left): the library takes over
	}
	sc, ok := w.(*socksConn)
	if !ok {
		return nil, errors.New("proxy: internal: SOCKS writer is not ours")
	}
	if err := a.srv.serveResolve(sc, br, isolationOf(ac)); err != nil {
		a.srv.log.Debug("RESOLVE failed", "err", err)
	}
	return nil, errResolveServed
}

// serveResolve answers one RESOLVE request read from br.
func (s *SOCKSServer) serveResolve(sc *socksConn, br *bufio.Reader, iso Isolation) error {
	raw, err := readResolveRequest(br)
	if err != nil {
		return fmt.Errorf("read RESOLVE: %w", err)
	}
	req, err := parseResolveRequest(raw)
	if err != nil {
		rep := repGeneralFailure
		if len(raw) >= 4 && raw[3] != atypIPv4 && raw[3] != atypIPv6 && raw[3] != atypDomain {
			rep = repAddrTypeNotSupport
		}
		return writeReply(sc, rep, netip.Addr{}, err)
	}
	if req.Atyp != atypDomain {
		// An IP literal resolves to itself, without the network.
		return writeReply(sc, repSucceeded, netip.MustParseAddr(req.Host), nil)
	}
	host, err := cell.CheckHost(req.Host)
	if err != nil {
		return writeReply(sc, replyCode(ErrBadTarget), netip.Addr{}, fmt.Errorf("%w: %w", ErrBadTarget, err))
	}
	if a, err := netip.ParseAddr(host); err == nil {
		// An IP literal sent as text: canonical, so never a name.
		return writeReply(sc, repSucceeded, a, nil)
	}
	_ = sc.SetDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(sc.ctx, s.cfg.ConnectTimeout)
	addr, err := s.cfg.Resolve(ctx, iso, host)
	cancel()
	if err == nil && !addr.IsValid() {
		err = errors.New("proxy: Resolve returned no address")
	}
	if err != nil {
		code := replyCode(err)
		return writeReply(sc, code, netip.Addr{}, fmt.Errorf("%w: RESOLVE reply 0x%02x", errStreamFailed, code))
	}
	return writeReply(sc, repSucceeded, addr, nil)
}

// writeReply sends one reply in a single write (btcd reads the first four
// bytes with one Read) and returns cause, or the write error.
func writeReply(w io.Writer, rep byte, addr netip.Addr, cause error) error {
	var buf [22]byte
	if _, err := w.Write(appendReply(buf[:0], rep, addr)); err != nil {
		return fmt.Errorf("write SOCKS reply: %w", err)
	}
	return cause
}
