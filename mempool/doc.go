// Package mempool delivers Bitcoin transactions through circuits: the
// client side (Client, with its durable Outbox) and the delivery role at
// the last hop (Server, handing transactions to its own bitcoind or btcd
// through Backend).
//
// The client checks a transaction locally (CheckTx: it decodes with btcd's
// wire and nothing else, so every policy verdict is the backend's), writes
// it to the Outbox before anything is sent, and sends it to two delivery
// nodes in different networks, each over a circuit of its own that carries
// nothing else. It keeps the transaction until one delivery node accepted
// it and another one, which did not take it, answers that the txid is in
// its mempool or chain (the echo check); until then it retries with
// jittered backoff, across restarts.
//
// The wire protocol on a BEGIN service mempool stream (target Target) is a
// sequence of requests and answers, each a frame (PROTOCOL.md §6): SUBMIT →
// VERDICT, QUERY → STATUS. Every field is bounded and parsed strictly
// (message.go).
//
// Left to others: which delivery node, and the circuit to it, are chosen
// by the node (Config.Dial); payment is metered by the circuit's ledger
// like any other stream; the bitcoind-compatible JSON-RPC front end is in
// package proxy, which takes the Client's methods as funcs.
package mempool
