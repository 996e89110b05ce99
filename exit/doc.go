// Package exit is the far end of an exit circuit: it decides whether a target
// may be reached (Policy) and opens the TCP connection (Dialer).
//
// A Policy refuses first, whatever its rules say, every address that is not
// on the public internet: private, loopback, link-local, CGNAT, multicast,
// unspecified, broadcast, documentation, benchmarking and reserved ranges in
// IPv4 and IPv6, their IPv4-mapped forms, and NAT64 and 6to4 addresses that
// embed them (the one classification of internal/netclass, which the
// relay's libp2p dial filter shares), as Tor's ExitPolicyRejectPrivate.
// Only ranges named in a separate setting (exit.allow_private_ranges,
// ParsePrivateRanges; devnet opens loopback) are let through to the rules.
// The rules are an ordered list of accept/reject lines over address prefixes
// and port ranges, written as strings such as "reject 203.0.113.0/24:*" or
// "accept *:80-443"; the first rule that matches decides and a target no
// rule matches is refused. DefaultPolicy adds only "reject *:25" and
// "accept *:*" to the first step.
//
// The Dialer resolves host names here at the exit, never at the client, and
// checks every resolved address against the policy before dialing, so a name
// that resolves to a private address (DNS rebinding) is refused and nothing
// behind the exit's firewall is reachable through it. Its errors wrap the
// shared sentinels of package circuit (ErrExitPolicy, ErrResolveFailed,
// ErrConnRefused, ErrUnreachable, ErrTimeout) together with the cause, so the
// circuit engine can pick the END reason with errors.Is.
//
// Targets arrive parsed: a cell.Target, which the client's front end built
// from the client's text and BEGIN carried in canonical form, so the exit
// has no target grammar of its own. It refuses .onion names and the zero
// Target, and vets a RESOLVE host with cell.CheckHost.
//
// TorGateway is the far end of a Tor-gateway circuit (BEGIN service
// tor-gateway): it takes only well-formed v3 .onion targets
// (internal/onionaddr), opens them through a tor dial func it is given
// (node hands it the managed tor's SOCKS dial), caps dials in progress
// per circuit and in all, refuses at once while tor is not ready, and
// returns tor's SOCKS refusals as *circuit.TorSocksError so the engine
// sends END tor-socks with tor's byte. It never imports the tor process
// code and never logs a target.
//
// It leaves to others: the stream protocol and its END reasons (circuit),
// wiring the Dialer to BEGIN and RESOLVE and turning YAML into a Policy
// (node), and the client-facing proxies (proxy). Nothing here logs a
// destination.
package exit
