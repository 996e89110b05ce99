package mempool

import "time"

// Target is the one BEGIN target of cell.ServiceMempool: the host
// "mempool" and, as the port, the version of the delivery protocol the
// stream speaks (PROTOCOL.md §6). A delivery node refuses any other target
// with END service-not-offered.
const Target = "mempool:1"

// Bounds of the delivery protocol (PROTOCOL.md §6).
const (
	// MaxTxBytes caps one serialized transaction: bitcoind's largest
	// standard transaction is 400,000 weight units, which is at most
	// 400,000 bytes.
	MaxTxBytes = 400_000
	// MaxMessageLen caps a verdict's message (printable ASCII).
	MaxMessageLen = 200
	// MaxFrameBody is the largest frame body: a SUBMIT with a fee cap and
	// the largest transaction.
	MaxFrameBody = 1 + 8 + MaxTxBytes
	// MaxRequestsPerStream caps requests on one stream; the client sends
	// one per stream.
	MaxRequestsPerStream = 4
	// MaxFeeRateSatPerKvB caps a SUBMIT's fee-rate limit: 1 BTC/kvB, above
	// what bitcoind's maxfeerate accepts.
	MaxFeeRateSatPerKvB = 100_000_000
)

// Defaults of ServerConfig and ClientConfig.
const (
	// DefaultReadTimeout bounds waiting for one request on a stream.
	DefaultReadTimeout = 30 * time.Second
	// DefaultBackendTimeout bounds one call to the backend.
	DefaultBackendTimeout = 20 * time.Second
	// DefaultMaxInFlight caps backend calls a delivery node makes at once;
	// a request beyond it is answered "unavailable".
	DefaultMaxInFlight = 16
	// DefaultVerdictWait is how long Broadcast waits for the first verdict
	// before returning the txid and leaving the transaction to the outbox.
	DefaultVerdictWait = 30 * time.Second
	// DefaultAttemptTimeout bounds one delivery attempt (circuit, stream,
	// answer).
	DefaultAttemptTimeout = 45 * time.Second
	// DefaultRetryMin and DefaultRetryMax bound the jittered backoff
	// between attempts of one transaction.
	DefaultRetryMin = time.Second
	DefaultRetryMax = 5 * time.Minute
	// DefaultEchoDelay is how long after acceptance the first echo query
	// goes out, so the transaction has had time to relay.
	DefaultEchoDelay = 500 * time.Millisecond
	// DefaultMaxQueued caps transactions in the outbox.
	DefaultMaxQueued = 1000
	// DefaultWorkers caps deliveries in flight at once.
	DefaultWorkers = 8
	// DefaultGiveUpAfter is how long a transaction is tried before it is
	// given up.
	DefaultGiveUpAfter = 24 * time.Hour
	// DefaultMaxAttempts caps rounds per transaction: with the default
	// backoff (at most 5 min apart) 300 rounds take about a day, so that
	// DefaultGiveUpAfter comes first unless RetryMax is lowered.
	DefaultMaxAttempts = 300
)
