// Package cell holds the pure codecs of the co-infuse circuit protocol: the
// fixed-size link cell and its CREATE, CREATED and DESTROY bodies
// (docs/PROTOCOL.md §2), the relay-message frame carried inside an onion
// (§5), and the bodies of the relay messages (BEGIN, CONNECTED, END, EXTEND,
// EXTENDED, RESOLVE, RESOLVED, TOPUP, TOPUP_ACK).
//
// It also holds Target, the one parsed "host:port" every layer passes on: a
// front end parses the client's text once (ParseTarget, NewTarget), the
// client sends its canonical form in BEGIN, and the last hop hands the
// decoded value to its service. CheckHost applies the same host grammar to
// a bare RESOLVE host.
//
// Everything here turns bytes into structs and back. Parsers check every
// bound, reject non-zero padding, unknown values and trailing bytes, and never
// panic on any input; decoded byte slices alias the input to keep the hot path
// free of allocations. The package does no I/O, starts no goroutines, logs
// nothing and imports only the standard library.
//
// It leaves to others: the onion layers, handshakes and circuit state machine
// (package circuit, §3–§4), link streams (§1), flow-control accounting (§5.2)
// and what a destination does with a stream (mempool, rendezvous, exit).
//
// Every decode failure wraps ErrMalformed as well as its specific sentinel, so
// a caller that only needs "the peer broke the protocol" can test for that one.
package cell
