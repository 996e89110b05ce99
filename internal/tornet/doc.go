// Package tornet runs a private Tor network on 127.0.0.1 for tests and
// devnet: three directory authorities (keys made with tor-gencert),
// relays of which some are exits whose policy accepts 127.0.0.0/8, with
// the testing voting intervals shortened so the network is usable within
// a minute or so. Clients join it through torproc with Network.Torrc.
//
// Every tor it starts is owned by the Network and stopped by Close.
// Ports are picked by listening on 127.0.0.1:0 and closing the listener
// before tor binds them: another process could take such a port in
// between (a small race that a retry of the test fixes; nothing in the
// network is reused across runs).
//
// It imports internal/torproc only.
package tornet
