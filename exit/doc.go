// Package exit is the far end of an exit circuit: it decides whether a target
// may be reached (Policy) and opens the TCP connection (Dialer).
//
// A Policy is an ordered list of accept/reject rules over address prefixes and
// port ranges, written as strings such as "reject 10.0.0.0/8:*" or
// "accept *:80-443"; the first rule that matches decides and a target no rule
// matches is refused. DefaultPolicy refuses everything that is not the public
// internet (private, loopback, link-local, CGNAT, multicast, documentation,
// benchmarking and reserved ranges, in IPv4 and IPv6) and port 25.
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
// It leaves to others: the stream protocol and its END reasons (circuit),
// wiring the Dialer to BEGIN and RESOLVE and turning YAML into a Policy
// (node), and the client-facing proxies (proxy). Nothing here logs a
// destination.
package exit
