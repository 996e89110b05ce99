package proxy

import "errors"

// ErrServerClosed is returned by Serve after Shutdown or Close, as
// net/http's ErrServerClosed is.
var ErrServerClosed = errors.New("proxy: server closed")

// ErrBadTarget: the client named a target that is not a valid host:port
// (a SOCKS client gets reply 0x01, an HTTP client 400).
var ErrBadTarget = errors.New("proxy: malformed target")
