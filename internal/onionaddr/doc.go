// Package onionaddr encodes and decodes Tor v3 onion service addresses
// (rend-spec-v3 §6 "Encoding onion addresses"): the 56 base32 characters of
// pubkey(32) | checksum(2) | version(1), followed by ".onion", where
// checksum is the first two bytes of SHA3-256(".onion checksum" | pubkey |
// version) and version is 3.
//
// It is the one place in the module that knows this format: the SOCKS front
// end checks .onion targets with it, the control port and the rendezvous
// service key derive service ids with it. It checks the form of an address
// only; whether the 32 bytes are a usable ed25519 point is left to whoever
// uses the key. Standard library only.
package onionaddr
