// Package node wires one co-infuse node together according to a Config
// read from config.yaml: the libp2p host, payments (LND, mint, wallet), the
// circuit engine with its service mux, the last hop's destinations (the
// table in destinations.go: exit, mint), discovery and the advert, the
// client's circuit pool, the SOCKS5 and HTTP CONNECT front ends and the
// admin socket (`co-infuse status`, `peers`, `wallet`). It owns their
// lifecycle: Start brings them up in dependency order, Close stops taking
// work first, then closes the engine and waits for it, then the stores.
//
// node holds no protocol logic: cells, onion layers and the service mux
// live in circuit/; the client's circuit choice (isolation, ports,
// dirtiness, pre-built circuits, retry with blame) in circuit/pool; the hop
// ledger and the prepay/top-up schedule in payment/; adverts and path
// selection in discovery/; exit policy in exit/; the SOCKS and HTTP
// protocols in proxy/. A new destination is a package that registers with
// the mux through one line in destinations.go. Package devnet runs a whole
// local network of nodes on loopback for newcomers and tests.
package node
