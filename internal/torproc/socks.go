package torproc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// SocksError is a non-zero SOCKS5 reply from tor: Code is the byte tor
// sent, 0x01-0x08 (RFC 1928 §6) or one of Tor's extended onion-service
// codes 0xF0-0xF7 (our SocksPort has ExtendedErrors; proposal 304).
type SocksError struct{ Code byte }

func (e *SocksError) Error() string {
	return fmt.Sprintf("tor socks reply 0x%02x (%s)", e.Code, socksCodeText(e.Code))
}

// socksCodeText names a SOCKS5 reply code.
func socksCodeText(c byte) string {
	switch c {
	case 0x01:
		return "general failure"
	case 0x02:
		return "not allowed by ruleset"
	case 0x03:
		return "network unreachable"
	case 0x04:
		return "host unreachable"
	case 0x05:
		return "connection refused"
	case 0x06:
		return "TTL expired"
	case 0x07:
		return "command not supported"
	case 0x08:
		return "address type not supported"
	case 0xF0:
		return "onion service descriptor not found"
	case 0xF1:
		return "onion service descriptor invalid"
	case 0xF2:
		return "onion service introduction failed"
	case 0xF3:
		return "onion service rendezvous failed"
	case 0xF4:
		return "onion service missing client authorization"
	case 0xF5:
		return "onion service wrong client authorization"
	case 0xF6:
		return "invalid onion address"
	case 0xF7:
		return "onion service introduction timed out"
	}
	return "unknown code"
}

// ErrSocksProtocol marks a SOCKS5 reply tor should never send.
var ErrSocksProtocol = errors.New("torproc: bad SOCKS5 reply")

// DialSocks opens a TCP stream to host:port through tor: SOCKS5 without
// authentication, CONNECT by domain name (tor resolves it at the exit, or
// reaches the .onion). ctx bounds the whole handshake. A non-zero reply
// is a *SocksError carrying tor's code.
func (t *Tor) DialSocks(ctx context.Context, host string, port uint16) (net.Conn, error) {
	return t.DialSocksIsolated(ctx, host, port, "")
}

// DialSocksIsolated is DialSocks with a stream-isolation key: tor's SOCKS
// port isolates by SOCKS username and password (IsolateSOCKSAuth, on by
// default), so streams with different keys never share a Tor circuit
// and streams with the same key may. isolation is sent as both username
// and password (RFC 1929); it must be 1-255 bytes, or empty for no
// authentication (DialSocks). It never leaves this machine: tor only
// compares it.
func (t *Tor) DialSocksIsolated(ctx context.Context, host string, port uint16, isolation string) (net.Conn, error) {
	inst, err := t.current()
	if err != nil {
		return nil, err
	}
	return dialSocks(ctx, inst.socks.String(), host, port, isolation)
}

func dialSocks(ctx context.Context, proxy, host string, port uint16, isolation string) (net.Conn, error) {
	if len(host) == 0 || len(host) > 255 {
		return nil, fmt.Errorf("torproc: socks: host name of %d bytes (1-255)", len(host))
	}
	if len(isolation) > 255 {
		return nil, fmt.Errorf("torproc: socks: isolation key of %d bytes (0-255)", len(isolation))
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxy)
	if err != nil {
		return nil, fmt.Errorf("torproc: dial tor's SOCKS port: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	if err := socksHandshake(c, host, port, isolation); err != nil {
		stop()
		c.Close()
		var se *SocksError
		if !errors.As(err, &se) && ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, err
	}
	if !stop() {
		c.Close()
		return nil, ctx.Err()
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// socksHandshake runs RFC 1928 on c: greeting (no auth, or RFC 1929
// username/password with isolation as both when it is not empty),
// CONNECT with ATYP 3 (domain name), reply. It reads exactly the reply's
// bytes, so what follows on c is the stream.
func socksHandshake(c io.ReadWriter, host string, port uint16, isolation string) error {
	conn := []byte{5, 1, 0, 3, byte(len(host))}
	conn = append(conn, host...)
	conn = binary.BigEndian.AppendUint16(conn, port)
	var b [4]byte
	if isolation == "" {
		// Greeting and request in one write; tor reads them in order.
		if _, err := c.Write(append([]byte{5, 1, 0}, conn...)); err != nil {
			return fmt.Errorf("torproc: socks: %w", err)
		}
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return fmt.Errorf("torproc: socks greeting: %w", err)
		}
		if b[0] != 5 || b[1] != 0 {
			return fmt.Errorf("%w: method %#x", ErrSocksProtocol, b[1])
		}
	} else {
		// One step at a time: tor answers a greeting and an RFC 1929
		// request that arrive together with the second reply only
		// (measured with tor 0.4.9), so each waits for its answer.
		if _, err := c.Write([]byte{5, 1, 2}); err != nil {
			return fmt.Errorf("torproc: socks: %w", err)
		}
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return fmt.Errorf("torproc: socks greeting: %w", err)
		}
		if b[0] != 5 || b[1] != 2 {
			return fmt.Errorf("%w: method %#x", ErrSocksProtocol, b[1])
		}
		auth := []byte{1, byte(len(isolation))}
		auth = append(auth, isolation...)
		auth = append(auth, byte(len(isolation)))
		auth = append(auth, isolation...)
		if _, err := c.Write(auth); err != nil {
			return fmt.Errorf("torproc: socks: %w", err)
		}
		// RFC 1929 §2: version 1, status 0 on success. tor accepts any
		// username and password; a refusal is a protocol fault.
		if _, err := io.ReadFull(c, b[:2]); err != nil {
			return fmt.Errorf("torproc: socks authentication: %w", err)
		}
		if b[0] != 1 || b[1] != 0 {
			return fmt.Errorf("%w: authentication status %#x", ErrSocksProtocol, b[1])
		}
		if _, err := c.Write(conn); err != nil {
			return fmt.Errorf("torproc: socks: %w", err)
		}
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return fmt.Errorf("torproc: socks reply: %w", err)
	}
	if b[0] != 5 {
		return fmt.Errorf("%w: version %d", ErrSocksProtocol, b[0])
	}
	if b[1] != 0 {
		return &SocksError{Code: b[1]}
	}
	var skip int
	switch b[3] {
	case 1:
		skip = 4
	case 4:
		skip = 16
	case 3:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return fmt.Errorf("torproc: socks reply: %w", err)
		}
		skip = int(l[0])
	default:
		return fmt.Errorf("%w: address type %d", ErrSocksProtocol, b[3])
	}
	if _, err := io.ReadFull(c, make([]byte, skip+2)); err != nil {
		return fmt.Errorf("torproc: socks reply: %w", err)
	}
	return nil
}
