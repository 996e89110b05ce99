// Package voucher implements co-infuse's Chaumian vouchers: blind RSA
// signatures (RFC 9474, RSABSSA-SHA384-PSS-Deterministic, through circl),
// keysets of one RSA key per power-of-two denomination, the voucher and
// keyset encodings, the messages of the /co-infuse/mint/1 protocol, and the
// durable spent set that makes every voucher redeemable once.
//
// A voucher is a 32-byte random secret signed blindly by the key of its
// denomination in a node's keyset. Anyone holding the node's public keyset
// (published in its advert) can verify it; the node that minted it can tell
// that it signed it but not for whom.
//
// What lives here: codecs (pure, fuzzed, no I/O), the blinding wrapper, key
// generation, verification and the SpentSet (bbolt, group-committed and
// fsynced before Spend returns).
//
// What is left to others: the node's side of the mint protocol (quotes,
// invoices, signing, swaps, redemption) is voucher/mint; the client's wallet,
// purchases and automatic top-up are voucher/wallet; Lightning itself is
// reached only through funcs in those packages' Configs (node/ wires them to
// lightning/); carrying vouchers to a hop (TOPUP, PROTOCOL.md §5) is circuit/.
// The wire format is documented in docs/VOUCHERS.md.
package voucher
