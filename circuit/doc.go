// Package circuit is the onion circuit engine of co-infuse: it relays
// circuits for other nodes and builds circuits for this one, over libp2p
// link streams (PROTOCOL.md §1, §3, §4, §5).
//
// An Engine owns one libp2p protocol handler (/co-infuse/link/2). As a
// relay (it has an OnionKey) it answers CREATE with the Noise NK handshake,
// extends circuits to the next hop on EXTEND, peels or adds one AES-256-GCM
// layer per RELAY cell, and at the last hop opens streams to destinations
// through the Begin hook. As a client, Build makes a circuit by telescoping
// and Circuit.Dial opens net.Conn streams over it with SENDME flow control.
//
// What it leaves to others:
//   - cell codecs: circuit/cell (bytes ⇄ structs, no I/O);
//   - payment: the Admit, Prepay, Account, TopUp and SessionClosed hooks
//     and HopInfo.Prepay are where node plugs in vouchers; this package
//     carries the handshake's offer and answer (PROTOCOL.md §4.1), confines
//     mint-only circuits (§4.5) and rate-limits CREATEs (§4.4), but never
//     sees money;
//   - destinations: the Begin and Resolve hooks (exit/, mempool/,
//     rendezvous/) decide what a target means and enforce exit policy;
//   - path selection and onion keys of other nodes: discovery/ and node/;
//   - the libp2p host, its transports and its lifetime: node/.
//
// Concurrency: each link has one reader and one writer goroutine; a relayed
// circuit has no goroutine of its own (the link readers run it), so an idle
// relayed circuit costs only its keys and table entries. Cells wait for a
// link in per-circuit queues that the link's writer serves by EWMA
// (PROTOCOL.md §1.2); no reader ever waits for another link, and a circuit
// whose queue is full is destroyed rather than stalling its link. Each client
// circuit has one goroutine that owns its incoming side. At the last hop each
// stream has one owner goroutine that holds its stream slot, its
// destination conn and its buffers until END, the destination or the
// circuit's end lets it release all three. Every goroutine is owned by the
// Engine and waited for in Close. Limits caps what peers can make an Engine
// hold, memory included (Limits.MemoryBudget).
package circuit
