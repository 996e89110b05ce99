// Package node wires one co-infuse node together: the libp2p host, the
// circuit engine, discovery, the exit dialer and the SOCKS5 and HTTP CONNECT
// front ends, according to a Config read from config.yaml. It owns their
// lifecycle (Start/Close) and the client's circuit pool, which maps each
// isolation key (a SOCKS username/password pair) to its own circuit and
// rebuilds circuits when a hop fails.
//
// node holds no protocol logic: cells and onion layers live in circuit/,
// adverts and path selection in discovery/, exit policy in exit/, and the
// SOCKS and HTTP protocols in proxy/. Package devnet runs a whole local
// network of nodes on loopback for newcomers and tests.
package node
