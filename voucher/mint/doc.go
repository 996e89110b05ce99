// Package mint is the node's side of co-infuse vouchers: it holds the
// node's signing keysets (generated, persisted, rotated with a grace
// period), serves the /co-infuse/mint/1 protocol (quote → invoice on the
// node's LND → blind signatures once the invoice is settled) on libp2p
// streams and, through ServeConn, on streams through circuits that end at
// this node (so a buyer need not reveal its address), swaps vouchers of
// unknown outcome for fresh ones of the same value (VOUCHERS.md §3.10),
// and redeems vouchers against the durable spent set.
//
// Every step is persisted before it is acknowledged: a quote is stored
// before it is sent, and a quote's blind signatures are stored (fsynced)
// before they are sent, so a retry of a settled quote returns the same
// signatures and no quote is ever signed twice for different messages. A
// swap spends its inputs and stores its answer under its request id in
// one fsynced transaction before answering, so a retried swap gets the
// same signatures and a late redemption of its inputs is refused.
//
// What is left to others: Lightning is reached only through the
// CreateInvoice and InvoiceSettled funcs in Config (node/ wires them to
// lightning/); publishing the keysets in the node's advert is discovery/'s,
// fed by Keysets and Config.OnKeysets; routing a circuit's mint stream to
// ServeConn is the circuit service mux's (node/ registers it); carrying
// vouchers over a circuit
// (TOPUP) is circuit/'s, and crediting a session with what they are worth
// is payment/'s hop ledger, which calls RedeemPayload (node/ wires the two
// together). The wire format is in docs/VOUCHERS.md.
package mint
