// Package lightning is co-infuse's client for the user's own LND node and the
// only package in the module that imports lnrpc.
//
// It dials LND over gRPC with the usual tls.cert and macaroon files (the same
// lnd.host, lnd.tlscertpath and lnd.macaroonpath names lnd users already
// know), checks the node with GetInfo at Dial time and turns LND's gRPC
// failures into sentinel errors (see errors.go) whose text says which file,
// which permission or which wallet state is at fault and what to do.
//
// The methods cover what co-infuse needs to buy and sell vouchers: creating
// and looking up invoices on the selling side, decoding and paying invoices on
// the buying side. PayInvoice is idempotent per payment hash: paying an
// invoice that this node already paid returns the original preimage instead of
// paying twice. The stake rule's calls (stake.go: SignMessage, VerifyMessage,
// NodeChannels) let a relay prove its Lightning node and a client weigh it;
// node hands them to discovery as funcs. A few operator methods (addresses, peers, channels, balances)
// exist for the regtest harness and status displays.
//
// Left to others: what an invoice buys (voucher), when and how much to pay
// (node), and the choice of price (discovery). This package never logs payment
// requests, preimages, macaroons or node addresses.
package lightning
