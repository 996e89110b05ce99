// Package proxy holds the user-facing front ends that make co-infuse a
// drop-in Tor replacement: a SOCKS5 server (Tor's SocksPort, as bitcoind,
// lnd and curl use it) and an HTTP CONNECT server (Tor's HTTPTunnelPort),
// and a bitcoind-compatible JSON-RPC server (NewRPC) whose broadcast methods
// go to funcs node wires to the mempool client and whose other methods pass
// through to the user's own node (docs/PROXY.md, "JSON-RPC").
//
// The front ends speak protocol only. They reach the network exclusively
// through the Dial and Resolve funcs in their Config, which node/ wires to
// circuits; they never resolve a name locally and never dial anything
// themselves. A client's SOCKS username/password pair (or HTTP
// Proxy-Authorization credentials) becomes the Isolation passed to those
// funcs, so node/ can give each pair its own circuit as Tor's
// IsolateSOCKSAuth does. The client's destination is parsed here, once, into
// a cell.Target (the grammar every layer shares), and Dial receives that
// value; a RESOLVE host is vetted with cell.CheckHost. Stream errors
// wrapping the circuit sentinels are mapped to SOCKS reply codes and HTTP
// statuses as docs/PROXY.md lists.
//
// The SOCKS server is built on github.com/things-go/go-socks5 with our own
// authenticators, a resolver that does not resolve, and our own CONNECT
// handler. Tor's RESOLVE (0xF0) extension, which that library refuses before
// any hook runs, is served by a thin layer at the end of method
// sub-negotiation: our authenticator peeks at the next request header on the
// library's buffered reader and answers RESOLVE itself (see socks_resolve.go
// and docs/PROXY.md).
//
// It leaves to others: circuits, isolation bookkeeping and payment (node,
// circuit), exit policy (exit), and the Tor control port. Nothing here logs
// a destination, credential or resolved address.
package proxy
