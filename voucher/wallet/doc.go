// Package wallet is the client's side of co-infuse vouchers: a durable
// wallet (bbolt, 0600) of vouchers per node and keyset with their states
// (quoted, paid, signed, reserved, unsure, swapped, spent), purchases over the
// mint protocol paid from the user's own LND, reached through
// Config.Dial (node: directly for entry guards, through a circuit ending
// at the node for any other), automatic purchase ahead of use, at random
// times, that keeps a balance at every node in use or likely to be
// (Config.Candidates) within a price cap and a daily budget, and
// settlement of vouchers whose TOPUP got no answer by swapping them at
// their node's mint for new vouchers of the same value (settle.go), so a
// redemption still on its way to the hop is refused as spent.
//
// A purchase is persisted before each irreversible step: the quote and the
// voucher seeds before paying, the payment before minting, the vouchers
// before they are reported. Blinding is derived from the stored seeds, so
// after a crash at any point Resume re-sends the very same mint request and
// the node returns the very same signatures: no paid sat is lost and no
// invoice is paid twice (a second PayInvoice of the same invoice is refused
// by LND and reported as success by the Lightning func).
//
// Trust rules: the wallet mints only with a keyset the node has published
// (Config.Published, from the node's signed advert), refuses a node that
// publishes more mintable keysets than MaxKeysetsPerNode (a node could
// otherwise tag a client with a key of its own), a keyset that mints for
// less than MinMintWindow (7 days) and more than MaxNewKeysets (3) new
// keysets first seen within NewKeysetPeriod (30 days), remembering first
// sightings in its file (keysets.go: a node could otherwise tag clients by
// when they bought); and it checks every invoice (amount, payee, payment
// hash, expiry) before paying it.
//
// Nothing in the file refers to this client's own peer ID: a client-only
// node is a new peer ID each run, and a purchase interrupted in one run is
// finished in the next by quote ID, which the mint treats as a bearer
// claim (VOUCHERS.md §3.4).
//
// What is left to others: Lightning is reached only through DecodeInvoice
// and PayInvoice in Config (node/ wires them to lightning/); adverts are
// discovery/'s; deciding when to pay a hop and how much is payment/'s
// (its client schedule takes vouchers from ReserveBatch and reports back
// with MarkSpent or Release), and carrying them there in a TOPUP is
// circuit/'s; node/ shows Balances, BudgetUsed and RecentPurchases on its
// admin socket and calls Buy for `co-infuse wallet buy`.
package wallet
