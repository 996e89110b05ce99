// Package loopport picks TCP ports of 127.0.0.1 for test harnesses whose
// daemons (tor, btcd, lnd) must be told their ports before they start.
//
// A port picked by listening on port 0 and closing again comes from the
// kernel's ephemeral range, from which every later port-0 listener and
// every tor "auto" port is drawn too: another process can be handed it
// before the daemon binds it. Pick draws at random below that range
// instead, where only another harness picking at the same moment can
// collide; the harness answers that rare case by starting again. It
// leaves starting and retrying the daemons to its callers.
package loopport
