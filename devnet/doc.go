// Package devnet runs a whole co-infuse network on one machine: relays,
// exits and a client, each a real node (package node) with its own data
// directory and config.yaml on loopback, a demo web server to fetch through
// it, and optionally a real regtest Lightning network (btcd and two lnd,
// from internal/regtest) so that the client buys vouchers as a user would.
//
// It is what `co-infuse devnet` runs and what the end-to-end tests start.
// It is the only non-test importer of internal/regtest, so that the node
// itself never links the code that builds and runs daemons. Protocol logic
// lives in the packages the nodes are made of; devnet only chooses their
// configurations and waits until they have found each other.
package devnet
