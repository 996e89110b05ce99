package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults for the zero fields of RPCConfig and RPCUpstream.
const (
	// DefaultRPCMaxBody caps one request body. A standard transaction is
	// at most 400,000 weight units, so at most 400 kB serialized and 800
	// kB as hex; a batch of a few such transactions plus JSON framing fits
	// in 4 MiB, and nothing a wallet or lnd sends through pass-through
	// comes near it (bitcoind's own cap is its 32 MiB HTTP body limit).
	DefaultRPCMaxBody = 4 << 20
	// DefaultRPCMaxBatch caps the number of calls in one batch.
	DefaultRPCMaxBatch = 1000
	// DefaultRPCMaxConcurrent caps requests being served at once (bitcoind:
	// -rpcthreads 16 workers); more wait for a slot until their deadline.
	DefaultRPCMaxConcurrent = 16
	// DefaultRPCReadTimeout bounds reading a request's head and body
	// (bitcoind: -rpcservertimeout 30 s).
	DefaultRPCReadTimeout = 30 * time.Second
	// DefaultRPCCallTimeout bounds one call to a func or to the upstream.
	DefaultRPCCallTimeout = 2 * time.Minute
	// DefaultRPCMaxConns caps concurrent client connections.
	DefaultRPCMaxConns = 128
	// DefaultRPCMaxUpstreamReply caps an upstream reply that must be
	// parsed to be reassembled into a mixed batch (single calls and
	// batches with no broadcast method are streamed unparsed, uncapped).
	DefaultRPCMaxUpstreamReply = 256 << 20
)

// RPCConfig configures the JSON-RPC front end (NewRPC). Broadcast is
// required, and at least one way to authenticate: User and Password, or
// CookiePath, or both.
type RPCConfig struct {
	// User and Password are bitcoind's -rpcuser/-rpcpassword. Both empty
	// means cookie authentication only; one without the other is an error.
	// Never logged.
	User, Password string
	// CookiePath is where the server writes bitcoind's ".cookie" file
	// ("__cookie__:<64 hex>", mode 0600, a fresh secret at each NewRPC,
	// replacing any old file) and removes it on Shutdown/Close. "" means
	// no cookie.
	CookiePath string

	// Broadcast hands a transaction to the network (node wires it to the
	// mempool client). hexTx is the client's hex string, unchecked beyond
	// being a JSON string: decoding is Broadcast's job, which answers a
	// bad one with an RPCCoder error of code -22 (RPCDeserializationError).
	// maxFeeRate is in BTC/kvB as the client gave it, parsed and range
	// checked like bitcoind's AmountFromValue (0 ≤ rate < 1, at most 8
	// decimals); nil means the default (bitcoind: 0.10); 0 means no limit.
	// It returns the txid in hex. ctx ends when the client goes away or
	// after CallTimeout. Errors map as RPCCoder says.
	Broadcast func(ctx context.Context, hexTx string, maxFeeRate *float64) (txid string, err error)

	// ForwardWalletSends forwards the wallet methods that create and send
	// a transaction (sendtoaddress, sendmany, send, sendall, bumpfee) to
	// Upstream. Default false: they get -32601, because the upstream's
	// wallet would broadcast from the user's own node, in the clear. Set
	// it only when the upstream runs with -walletbroadcast=0, so that
	// those methods just create the transaction.
	ForwardWalletSends bool
	// BroadcastInfo answers getprivatebroadcastinfo; the value is
	// marshalled with encoding/json as the result. Nil: the method is
	// answered -32601 (or forwarded to Upstream if there is one).
	BroadcastInfo func(ctx context.Context) (any, error)
	// Abort answers abortprivatebroadcast <id>; id is the string the
	// client sent (a txid or wtxid in bitcoind). Nil: as BroadcastInfo.
	Abort func(ctx context.Context, id string) (any, error)

	// Upstream, if not nil, receives every call other than the broadcast
	// methods unchanged (pass-through). Nil: other methods get -32601.
	Upstream *RPCUpstream

	// Logger receives debug-level request outcomes (method names and
	// codes, never params, txids, credentials or addresses). Default
	// slog.Default(); the server adds subsys=rpc.
	Logger *slog.Logger
	// MaxBody caps one request body in bytes; a bigger one gets HTTP 413.
	// Default DefaultRPCMaxBody (4 MiB).
	MaxBody int64
	// MaxBatch caps the calls in one batch; a longer batch is answered
	// with one -32600 error. Default DefaultRPCMaxBatch (1000).
	MaxBatch int
	// MaxConcurrent caps requests being worked on at once. Default 16.
	MaxConcurrent int
	// MaxConns caps concurrent client connections. Default 128.
	MaxConns int
	// ReadTimeout bounds reading a request (head and body). Default 30 s.
	ReadTimeout time.Duration
	// CallTimeout bounds one Broadcast/BroadcastInfo/Abort call or one
	// upstream exchange. Default 2 min.
	CallTimeout time.Duration
	// AuthFailures caps answered failed authentications per second (all
	// clients together, burst of the same size): beyond it a request with
	// wrong credentials waits for its turn before its 401, so guessing a
	// password is throttled, while good credentials never wait (bitcoind
	// sleeps 250 ms on every bad attempt instead). Default 10.
	AuthFailures int
}

// RPCUpstream is the user's own bitcoind or btcd for pass-through.
type RPCUpstream struct {
	// URL is "host:port" or "http://host:port[/path]" (TLS is not
	// supported; the upstream is expected on loopback or a trusted link).
	URL string
	// User and Password authenticate to the upstream; if both are empty,
	// CookiePath is read at each call (so a restarted bitcoind's new
	// cookie is picked up).
	User, Password string
	CookiePath     string
	// MaxReply caps an upstream reply the server has to parse (a batch
	// mixing broadcast and forwarded calls). Default 256 MiB.
	MaxReply int64
}

// RPCCoder is implemented by errors that carry a bitcoind RPC error code
// (src/rpc/protocol.h), for example -26 RPCVerifyRejected. When a func in
// RPCConfig returns an error e and errors.As(e, &c) finds an RPCCoder c,
// the reply's error is {"code": c.RPCCode(), "message": e.Error()}, so the
// message is shown to the RPC client and must carry nothing secret. Any
// other error becomes code -1 (RPCMiscError) with a generic message; its
// text is only logged at debug level. context.DeadlineExceeded from
// CallTimeout becomes -1 "request timed out".
type RPCCoder interface {
	RPCCode() int
}

// RPCError is a ready RPCCoder: an error with a bitcoind code and the
// message the client sees.
type RPCError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (e *RPCError) Error() string { return e.Message }

// RPCCode returns e.Code.
func (e *RPCError) RPCCode() int { return e.Code }

var _ RPCCoder = (*RPCError)(nil)

// Bitcoind's RPC error codes (src/rpc/protocol.h) that this server sends
// or that the funcs are expected to return.
const (
	RPCInvalidRequest = -32600 // JSON-RPC: not a request object
	RPCMethodNotFound = -32601 // JSON-RPC: unknown method
	RPCInvalidParams  = -32602 // JSON-RPC: unknown named parameter
	RPCInternalError  = -32603 // JSON-RPC: our bug
	RPCParseError     = -32700 // JSON-RPC: body is not JSON

	RPCMiscError            = -1  // std::exception thrown in command handling
	RPCTypeError            = -3  // unexpected type was passed as parameter
	RPCInvalidAddressOrKey  = -5  // invalid address or key (also: unknown id)
	RPCInvalidParameter     = -8  // invalid, missing or duplicate parameter
	RPCDeserializationError = -22 // error parsing or validating structure in raw format
	RPCVerifyError          = -25 // general error during transaction or block submission
	RPCVerifyRejected       = -26 // transaction or block was rejected by network rules
	RPCVerifyAlreadyInChain = -27 // transaction already in chain
	RPCInWarmup             = -28 // client still warming up
	RPCClientNotConnected   = -9  // not connected (here: no delivery node reachable)
	RPCClientP2PDisabled    = -31 // no P2P functionality (here: no circuits)
)

// withDefaults validates c and fills its zero fields.
func (c RPCConfig) withDefaults() (RPCConfig, error) {
	switch {
	case c.Broadcast == nil:
		return c, errors.New("rpc config: Broadcast is required")
	case (c.User == "") != (c.Password == ""):
		return c, errors.New("rpc config: User and Password must be set together")
	case c.User == "" && c.CookiePath == "":
		return c, errors.New("rpc config: no authentication: set User and Password, or CookiePath")
	case c.MaxBody < 0:
		return c, fmt.Errorf("rpc config: MaxBody %d is negative", c.MaxBody)
	case c.MaxBatch < 0:
		return c, fmt.Errorf("rpc config: MaxBatch %d is negative", c.MaxBatch)
	case c.MaxConcurrent < 0:
		return c, fmt.Errorf("rpc config: MaxConcurrent %d is negative", c.MaxConcurrent)
	case c.MaxConns < 0:
		return c, fmt.Errorf("rpc config: MaxConns %d is negative", c.MaxConns)
	case c.ReadTimeout < 0:
		return c, fmt.Errorf("rpc config: ReadTimeout %v is negative", c.ReadTimeout)
	case c.CallTimeout < 0:
		return c, fmt.Errorf("rpc config: CallTimeout %v is negative", c.CallTimeout)
	case c.AuthFailures < 0:
		return c, fmt.Errorf("rpc config: AuthFailures %d is negative", c.AuthFailures)
	}
	if c.Upstream != nil {
		if c.Upstream.URL == "" {
			return c, errors.New("rpc config: Upstream.URL is empty")
		}
		if (c.Upstream.User == "") != (c.Upstream.Password == "") {
			return c, errors.New("rpc config: Upstream.User and Upstream.Password must be set together")
		}
		if c.Upstream.MaxReply < 0 {
			return c, fmt.Errorf("rpc config: Upstream.MaxReply %d is negative", c.Upstream.MaxReply)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultRPCMaxBody
	}
	if c.MaxBatch == 0 {
		c.MaxBatch = DefaultRPCMaxBatch
	}
	if c.MaxConcurrent == 0 {
		c.MaxConcurrent = DefaultRPCMaxConcurrent
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultRPCMaxConns
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = DefaultRPCReadTimeout
	}
	if c.CallTimeout == 0 {
		c.CallTimeout = DefaultRPCCallTimeout
	}
	if c.AuthFailures == 0 {
		c.AuthFailures = 10
	}
	return c, nil
}
