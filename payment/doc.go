// Package payment is the payment protocol of co-infuse (PROTOCOL.md §5.3):
// how a paid hop meters the sessions it relays, and how a client prepays
// and tops up the hops of its circuits with vouchers.
//
// Pay before service (PROTOCOL.md §4.1, §4.4, §4.5): a circuit pays each
// paid hop inside that hop's handshake. Hop side, Ledger.Prepay (the shape
// of circuit.Config.Prepay) redeems the handshake's voucher batch and opens
// the session with that credit, refuses a batch that credits nothing, and
// opens an unpaid, mint-only session for a purchase circuit's last hop.
// Client side, a Build (Client.NewBuild) gives each paid hop a
// circuit.Prepay that reserves PrepayBytes of the hop's vouchers just
// before its handshake and settles them by its answer (spent, released,
// or unsure when there was none); OpenBuilt then starts the circuit's
// ledger from those credits. MintOnly is the purchase circuit's last hop.
//
// Hop side: a Ledger keeps one prepaid byte allowance per session cookie
// (§4.3). Its Account, TopUp and Closed methods have the shapes of
// circuit.Config's Account, TopUp and SessionClosed hooks. TopUp redeems
// a voucher batch through LedgerConfig.Redeem, credits CreditBytes of
// the redeemed sats and answers an Ack (ack.go): sats credited, the
// allowance after crediting, the bytes charged so far and, if a voucher
// was refused, why. Account charges every relayed cell and refuses, with
// an error wrapping circuit.ErrPayment, once a session has run more than
// GraceBytes into debt. NoteService tells the ledger which service a
// session asked for, so Stats can split the hop's work by role.
//
// Client side: a Client pays the paid hops of a circuit in the hops' own
// unit, the RELAY cells each has carried (TopUpper.HopCarried). Open
// prepays each of them PrepayBytes at its price by TOPUP before the
// circuit carries a stream (for hops not paid in their handshakes;
// node uses NewBuild and OpenBuilt) (at most MaxPaidCircuitsPerMinute new paid circuits a
// minute); then (*Circuit).Check, run on every read and write of a conn
// from Wrap and every CheckInterval by the Client, tops a hop up back to
// its target whenever its prepaid allowance falls below half of it, the
// target doubling per top-up from PrepayBytes to TargetAheadBytes, at
// most one top-up per hop at a time, on goroutines the Client owns. A
// TOPUP with no answer hands its vouchers back as unsure
// (Reservation.Unsure), to be settled with the hop's mint. Each TOPUP_ACK is checked against the client's counts: a
// hop that charges more than it carried (beyond OverChargeToleranceBytes)
// or credits less than its advertised price buys is no longer paid, and
// the circuit is closed (HopStats.OverCharged, LastReason). The schedule
// lives in schedule.go and nowhere else.
//
// What it leaves to others:
//   - vouchers, the spent set and Lightning: voucher/mint and
//     voucher/wallet, reached only through the funcs in LedgerConfig and
//     ClientConfig (node plugs mint.RedeemPayload, wallet.ReserveBatch,
//     ReserveBulkBatch for top-ups, MarkSpent, Release and Buy in), so
//     unit tests use small fakes;
//   - TOPUP and TOPUP_ACK cells, and destroying a circuit that does not
//     pay: circuit, through its hooks and (*circuit.Circuit).TopUp;
//   - which hops are paid and at what price (adverts): discovery and node;
//   - the lifetime of circuits: node closes a *Circuit when its circuit
//     ends.
//
// Nothing here logs session cookies, destinations or voucher contents.
package payment
