// Package rendezvous is co-infuse's onion services (PROTOCOL.md §7): the
// rendezvous role at a circuit's last hop (rendezvous splices, introduction
// points, the descriptor directory), the client's Manager that dials
// .onion targets and publishes services under Tor v3 keys (Key, in Tor's
// expanded ED25519-V3 form), and the Mirror that publishes the same
// services on a second network (Tor, through a local tor) under the same
// key.
//
// Circuits, node choice, discovery and the second network come in as funcs
// (Config, MirrorConfig); node/rendezvous.go and node/control.go plug them
// in. The control-port protocol is proxy's.
package rendezvous
