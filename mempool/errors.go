package mempool

import (
	"errors"
	"fmt"
)

// Bitcoind's RPC error codes (src/rpc/protocol.h) a delivery answers with.
const (
	CodeMisc           = -1  // RPC_MISC_ERROR
	CodeNotConnected   = -9  // RPC_CLIENT_NOT_CONNECTED
	CodeDecode         = -22 // RPC_DESERIALIZATION_ERROR
	CodeVerify         = -25 // RPC_VERIFY_ERROR: missing inputs, fee above maxfeerate
	CodeRejected       = -26 // RPC_VERIFY_REJECTED: policy or consensus
	CodeAlreadyInChain = -27 // RPC_VERIFY_ALREADY_IN_CHAIN
)

// Error is a bitcoind-style RPC error: the backend's verdict on a
// transaction or the client's own pre-check. Its message is what bitcoind
// would show and carries nothing about the user.
type Error struct {
	Code    int
	Message string
}

func (e *Error) Error() string { return e.Message }

// RPCCode is the bitcoind error code, for the JSON-RPC front end.
func (e *Error) RPCCode() int { return e.Code }

func rpcErr(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Protocol failures (message.go). A peer that sends them is faulty.
var (
	// ErrMalformed: a frame or body that breaks PROTOCOL.md §6.
	ErrMalformed = errors.New("mempool: malformed message")
	// ErrUnexpected: a well-formed frame of a kind not expected here.
	ErrUnexpected = errors.New("mempool: unexpected message")
)

// Client-side failures.
var (
	// ErrNoDeliveryNode is what Config.Dial wraps when no delivery node
	// fits the request (none known, or all excluded).
	ErrNoDeliveryNode = errors.New("mempool: no delivery node available")
	// ErrClosed: the Client or Outbox is closed.
	ErrClosed = errors.New("mempool: closed")
	// ErrUnknownTx: no such transaction in the outbox.
	ErrUnknownTx = errors.New("mempool: transaction not in the outbox")
	// ErrMaybeSent: Broadcast's outbox write failed after its checks (an
	// I/O error in the commit), once the first round had started sending:
	// the transaction may have reached a delivery node but is not queued,
	// so it is neither retried nor echo-checked. Wrapped with an *Error
	// (code -1) that tells the user to check before sending it again.
	ErrMaybeSent = errors.New("mempool: transaction may have been sent")
)
