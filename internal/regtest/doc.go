// Package regtest runs a private Bitcoin regtest network of real daemons for
// tests and for `co-infuse devnet`: one btcd and two LND nodes, Alice (the
// paying, client side) and Bob (the paid, node side), with a funded channel
// from Alice to Bob.
//
// EnsureBinaries builds btcd, btcctl, lnd and lncli once per machine into a
// cache directory (guarded by a file lock so parallel test binaries do not
// build twice). Start brings the network up on free 127.0.0.1 ports only,
// mines until segwit is active and Alice is funded, opens the channel and
// waits until both sides see it active. Every process is owned by the
// Network, logs to a file under Options.Dir, and is stopped by Close; error
// messages carry the tail of the failing daemon's log.
//
// The first build takes minutes (lnd is large), longer than go test's
// default 10-minute timeout on a busy machine: run `go test -timeout 60m`
// the first time, or build ahead with EnsureBinaries (co-infuse devnet
// does). Tests that need the network should skip under testing.Short().
//
// Left to others: what the channel is used for. Callers reach the nodes
// through the lightning package with the paths in NodeInfo.
package regtest
