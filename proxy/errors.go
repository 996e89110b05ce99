package proxy

import "errors"

// ErrServerClosed is returned by Serve after Shutdown or Close, as
// net/http's ErrServerClosed is.
var ErrServerClosed = errors.New("proxy: server closed")

// ErrBadTarget: the client named a target that is not a valid host:port
// (a SOCKS client gets reply 0x01, an HTTP client 400).
var ErrBadTarget = errors.New("proxy: malformed target")

// ErrOnionNotFound: the Dial or Resolve func has no way to a .onion host
// and asked nobody about it. Until onion services are built, node's Dial
// and Resolve answer every .onion host with it, so the name never reaches
// an exit. A SOCKS CONNECT gets Tor's extended reply 0xF0 (descriptor not
// found), a SOCKS RESOLVE 0x04, an HTTP CONNECT 404.
var ErrOnionNotFound = errors.New("proxy: onion service descriptor not found")
