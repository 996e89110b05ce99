// Package netclass tells whether an IP address is on the public internet
// and, if not, which special-purpose range it falls in. It is the one
// classification the exit (what a client may make it connect to) and the
// relay's libp2p dial filter (what an EXTEND may make it dial) share, so the
// two cannot disagree about what "private" means.
//
// Classify judges an address by every form it takes on the wire: an
// IPv4-mapped IPv6 address as the IPv4 address it is; a NAT64 address
// (64:ff9b::/96) or a 6to4 address (2002::/16) also by the IPv4 address it
// embeds, since a translator or relay would deliver it there. The ranges come
// from the IANA IPv4 and IPv6 Special-Purpose Address Registries (RFC 6890)
// and are listed, with their class and source, by Ranges.
//
// It leaves to others what to do with a verdict: the exit's policy and its
// allow_private_ranges setting (package exit), the connection gater (node).
// It has no state and does no I/O.
package netclass
