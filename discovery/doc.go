// Package discovery publishes and finds co-infuse service adverts on a
// Kademlia DHT and chooses circuit paths among them.
//
// A node's Advert (roles, prices in sat/MB, onion key, mint keysets, exit
// port summary, family, addresses, sequence number, expiry) is encoded in a
// canonical binary form and signed with the node's libp2p identity key
// (DISCOVERY.md §3). The node serves it over /co-infuse/advert/1 and
// announces itself as a DHT provider of one content key per role and per
// exit port class (§2); a client asks the DHT for the providers of a key and
// fetches each advert from the node itself. Clients check signature, key
// binding, freshness and sequence, and keep adverts, success statistics and
// entry guards in a bbolt cache so a restart does not start from zero.
//
// SelectPath chooses hops among fresh adverts: a primary guard from a
// sampled guard set first, exits by port, weighted by verified Lightning
// stake (the advert's payee signs the node's peer ID; the client checks
// with its own LND through funcs in Config, §7), age, observed success and
// price, never two hops in one IPv4 /16 (IPv6 /32), one Lightning node or
// one mutually declared family. Lookups cap what any one DHT server
// contributes (§5.1); equivocation is proved on signed bodies and banned
// persistently (§4).
//
// This package is the only importer of go-libp2p-kad-dht. It leaves to
// others: building the libp2p host and choosing its key (node), what the
// keysets and onion key mean (voucher, circuit), enforcing the exit policy
// (exit), paying hops (voucher, lightning), talking to LND (lightning,
// handed in as funcs: this package never imports lnrpc), the CLI (cmd). It never dials a
// circuit hop; node reports circuit outcomes back through Report.
package discovery
