package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// The methods served here; every other one goes to the upstream.
const (
	methodSendRawTransaction = "sendrawtransaction"
	methodPrivateInfo        = "getprivatebroadcastinfo"
	methodAbortPrivate       = "abortprivatebroadcast"
)

// rpcMethod describes a local method's arguments as bitcoind's RPCHelpMan
// does: names in position order and how many are required.
type rpcMethod struct {
	names    []string
	required int
	usage    string // bitcoind sends the help text when the count is wrong
}

var rpcMethods = map[string]rpcMethod{
	methodSendRawTransaction: {
		names:    []string{"hexstring", "maxfeerate", "maxburnamount"},
		required: 1,
		usage: "sendrawtransaction \"hexstring\" ( maxfeerate maxburnamount )\n\n" +
			"Submit a raw transaction (serialized, hex-encoded) to the network through co-infuse:\n" +
			"it is delivered over its own fresh circuits, never from this machine's address.\n\n" +
			"Arguments:\n" +
			"1. hexstring        (string, required) The hex string of the raw transaction\n" +
			"2. maxfeerate       (numeric or string, optional, default=\"0.10\") Reject transactions whose fee rate is higher than the specified value, expressed in BTC/kvB. Fee rates larger than 1BTC/kvB are rejected. Set to 0 to accept any fee rate. A boolean (btcd's allowhighfees) is accepted too: true means 0.\n" +
			"3. maxburnamount    (numeric or string, optional, default=\"0.00\") Checked as an amount; not enforced here.\n\n" +
			"Result:\n\"hex\"    (string) The transaction hash in hex\n",
	},
	methodPrivateInfo: {
		usage: "getprivatebroadcastinfo\n\n" +
			"Returns information about transactions that are currently being privately broadcast.\n\n" +
			"Result:\n{\n  \"transactions\" : [ { \"txid\", \"wtxid\", \"hex\", \"peers\" : [ { \"address\", \"sent\", \"received\" } ] } ]\n}\n",
	},
	methodAbortPrivate: {
		names:    []string{"id"},
		required: 1,
		usage: "abortprivatebroadcast \"id\"\n\n" +
			"Abort private broadcast attempts for a transaction currently being privately broadcast.\n" +
			"The transaction will be removed from the private broadcast queue.\n\n" +
			"Arguments:\n1. id    (string, required) A transaction identifier to abort. It will be matched against both txid and wtxid for all transactions in the private broadcast queue.\n\n" +
			"Result:\n{\n  \"removed_transactions\" : [ { \"txid\", \"wtxid\", \"hex\" } ]\n}\n",
	},
}

// withheld are broadcast methods that are neither served here nor ever
// forwarded: the upstream would send the transactions from the user's own
// node, in the clear. They get -32601, so a client falls back to
// sendrawtransaction.
var withheld = map[string]bool{
	"submitpackage": true,
	// bitcoind's hidden sendmsgtopeer sends any P2P message, a "tx" too,
	// from the upstream's own connections.
	"sendmsgtopeer": true,
}

// walletSends are the wallet methods that create a transaction and, unless
// the upstream runs with -walletbroadcast=0, broadcast it from the user's
// own node. They are withheld too unless RPCConfig.ForwardWalletSends says
// the upstream does not broadcast.
var walletSends = map[string]bool{
	"sendtoaddress": true,
	"sendmany":      true,
	"send":          true,
	"sendall":       true,
	"bumpfee":       true,
}

// withholds reports whether method is never forwarded.
func (s *RPCServer) withholds(method string) bool {
	return withheld[method] || walletSends[method] && !s.cfg.ForwardWalletSends
}

// localNames are substrings of every method name answered here: a body
// holding none of them (and no \u escape that could spell one) can be
// forwarded without parsing.
var localNames = [][]byte{
	[]byte(methodSendRawTransaction), []byte("privatebroadcast"), []byte("submitpackage"), []byte("send"), []byte("bumpfee"), []byte(`\u`),
}

// mayNameLocal reports whether body could name a method answered here.
func mayNameLocal(body []byte) bool {
	for _, n := range localNames {
		if bytes.Contains(body, n) {
			return true
		}
	}
	return false
}

// isLocal reports whether method is answered here rather than forwarded.
func (s *RPCServer) isLocal(method string) bool {
	switch method {
	case methodSendRawTransaction:
		return true
	case methodPrivateInfo:
		return s.cfg.BroadcastInfo != nil
	case methodAbortPrivate:
		return s.cfg.Abort != nil
	}
	return s.withholds(method)
}

// exec runs one local call and returns its result as JSON.
func (s *RPCServer) exec(ctx context.Context, c *rpcCall) (json.RawMessage, *RPCError) {
	if withheld[c.method] {
		return nil, &RPCError{RPCMethodNotFound, "Method not found (" + c.method + " is not forwarded: the upstream node would broadcast in the clear)"}
	}
	if s.withholds(c.method) {
		return nil, &RPCError{RPCMethodNotFound, "Method not found (" + c.method + " is not forwarded: the upstream's wallet would broadcast in the clear; run it with -walletbroadcast=0, set mempool.rpc.forward_wallet_sends, and send the signed hex with sendrawtransaction)"}
	}
	m := rpcMethods[c.method]
	args, rerr := positional(c.params, m)
	if rerr != nil {
		return nil, rerr
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	var (
		result any
		err    error
	)
	switch c.method {
	case methodSendRawTransaction:
		hexTx, feeRate, rerr := sendRawTransactionArgs(args)
		if rerr != nil {
			return nil, rerr
		}
		result, err = s.cfg.Broadcast(ctx, hexTx, feeRate)
	case methodPrivateInfo:
		result, err = s.cfg.BroadcastInfo(ctx)
	case methodAbortPrivate:
		if rerr := checkString(args, 0, m.names[0]); rerr != nil {
			return nil, rerr
		}
		var id string
		_ = json.Unmarshal(args[0], &id) // checked above
		if rerr := checkHash(id, m.names[0]); rerr != nil {
			return nil, rerr
		}
		result, err = s.cfg.Abort(ctx, id)
	default:
		return nil, &RPCError{RPCMethodNotFound, "Method not found"}
	}
	if err != nil {
		return nil, s.funcError(c.method, err)
	}
	out, err := json.Marshal(result)
	if err != nil {
		s.log.Error("rpc result does not marshal", "method", c.method, "err", err)
		return nil, &RPCError{RPCInternalError, "Internal error"}
	}
	return out, nil
}

// funcError maps an error from a func of RPCConfig to the reply's error
// (see RPCCoder).
func (s *RPCServer) funcError(method string, err error) *RPCError {
	var c RPCCoder
	if errors.As(err, &c) {
		return &RPCError{Code: c.RPCCode(), Message: err.Error()}
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Debug("rpc call timed out", "method", method)
		return &RPCError{RPCMiscError, "request timed out"}
	case errors.Is(err, context.Canceled):
		return &RPCError{RPCMiscError, "request cancelled"}
	}
	// The text may name a txid or a peer: not in the reply, not in logs.
	s.log.Debug("rpc call failed", "method", method)
	return &RPCError{RPCMiscError, method + " failed"}
}

// positional turns params (nil, an array or an object of named arguments)
// into position order as bitcoind's transformNamedArguments does, and
// checks the count as RPCHelpMan does (a wrong count gets the help text,
// code -1). Missing named arguments are nil.
func positional(params json.RawMessage, m rpcMethod) ([]json.RawMessage, *RPCError) {
	var args []json.RawMessage
	switch jsonType(params) {
	case "null":
	case "array":
		if err := json.Unmarshal(params, &args); err != nil {
			return nil, &RPCError{RPCInvalidRequest, "Params must be an array or object"}
		}
	case "object":
		var named map[string]json.RawMessage
		if err := json.Unmarshal(params, &named); err != nil {
			return nil, &RPCError{RPCInvalidRequest, "Params must be an array or object"}
		}
		if dup := duplicateKey(params); dup != "" {
			return nil, &RPCError{RPCInvalidParameter, "Parameter " + dup + " specified multiple times"}
		}
		for i, n := range m.names {
			v, ok := named[n]
			if !ok {
				continue
			}
			delete(named, n)
			for len(args) <= i {
				args = append(args, nil)
			}
			args[i] = v
		}
		for k := range named {
			return nil, &RPCError{RPCInvalidParameter, "Unknown named parameter " + k}
		}
	}
	if len(args) < m.required || len(args) > len(m.names) {
		return nil, &RPCError{RPCMiscError, m.usage}
	}
	return args, nil
}

// duplicateKey returns a key that occurs twice in obj, a valid JSON object
// (encoding/json would silently keep the last), or "".
func duplicateKey(obj json.RawMessage) string {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if _, err := dec.Token(); err != nil { // {
		return ""
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		k, _ := tok.(string)
		if seen[k] {
			return k
		}
		seen[k] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// arg returns args[i], or nil when it is absent or null.
func arg(args []json.RawMessage, i int) json.RawMessage {
	if i >= len(args) || args[i] == nil || isNull(args[i]) {
		return nil
	}
	return args[i]
}

// checkString is RPCHelpMan's type check for a required string argument.
func checkString(args []json.RawMessage, i int, name string) *RPCError {
	got := "null"
	if a := arg(args, i); a != nil {
		got = jsonType(a)
	}
	if got == "string" {
		return nil
	}
	detail, _ := json.MarshalIndent(map[string]string{
		fmt.Sprintf("Position %d (%s)", i+1, name): "JSON value of type " + got + " is not of expected type string",
	}, "", "    ")
	return &RPCError{RPCTypeError, "Wrong type passed:\n" + string(detail)}
}

// checkHash is bitcoind's ParseHashV: 64 hex digits.
func checkHash(s, name string) *RPCError {
	if len(s) != 64 {
		return &RPCError{RPCInvalidParameter, fmt.Sprintf("%s must be of length 64 (not %d, for '%s')", name, len(s), s)}
	}
	if _, err := hex.DecodeString(s); err != nil {
		return &RPCError{RPCInvalidParameter, fmt.Sprintf("%s must be hexadecimal string (not '%s')", name, s)}
	}
	return nil
}

// sendRawTransactionArgs checks sendrawtransaction's arguments: the hex
// string (a JSON string; decoding is Broadcast's job), maxfeerate as
// bitcoind's ParseFeeRate (nil: default; btcd's boolean allowhighfees:
// true → 0, no limit) and maxburnamount as an amount.
func sendRawTransactionArgs(args []json.RawMessage) (string, *float64, *RPCError) {
	if rerr := checkString(args, 0, "hexstring"); rerr != nil {
		return "", nil, rerr
	}
	var hexTx string
	_ = json.Unmarshal(args[0], &hexTx) // checked above
	var feeRate *float64
	if a := arg(args, 1); a != nil {
		switch string(a) {
		case "true":
			feeRate = new(float64)
		case "false":
		default:
			sats, rerr := amountFromValue(a)
			if rerr != nil {
				return "", nil, rerr
			}
			if sats >= satsPerBTC {
				return "", nil, &RPCError{RPCInvalidParameter, "Fee rates larger than or equal to 1BTC/kvB are not accepted"}
			}
			f := float64(sats) / satsPerBTC
			feeRate = &f
		}
	}
	if a := arg(args, 2); a != nil {
		if _, rerr := amountFromValue(a); rerr != nil {
			return "", nil, rerr
		}
	}
	return hexTx, feeRate, nil
}

const (
	satsPerBTC = 100_000_000
	maxMoney   = 21_000_000 * satsPerBTC
)

// amountSyntax is the number grammar bitcoind's ParseFixedPoint accepts.
var amountSyntax = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// amountFromValue is bitcoind's AmountFromValue with 8 decimals: a JSON
// number or a string holding one, in BTC, to satoshis.
func amountFromValue(v json.RawMessage) (int64, *RPCError) {
	var s string
	switch jsonType(v) {
	case "number":
		s = strings.TrimSpace(string(v))
	case "string":
		_ = json.Unmarshal(v, &s)
	default:
		return 0, &RPCError{RPCTypeError, "Amount is not a number or string"}
	}
	invalid := &RPCError{RPCTypeError, "Invalid amount"}
	if len(s) > 64 || !amountSyntax.MatchString(s) {
		return 0, invalid
	}
	mant, exp := s, 0
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil || e < -40 || e > 40 {
			return 0, invalid
		}
		mant, exp = s[:i], e
	}
	r, ok := new(big.Rat).SetString(mant)
	if !ok {
		return 0, invalid
	}
	scale := new(big.Rat).SetFrac(big.NewInt(satsPerBTC), big.NewInt(1))
	pow := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil)
	if exp >= 0 {
		scale.Mul(scale, new(big.Rat).SetInt(pow))
	} else {
		scale.Quo(scale, new(big.Rat).SetInt(pow))
	}
	r.Mul(r, scale)
	if !r.IsInt() {
		return 0, invalid // more than 8 decimals
	}
	n := r.Num()
	if !n.IsInt64() || n.Int64() >= 1e18 || n.Int64() <= -1e18 {
		return 0, invalid // ParseFixedPoint refuses 18+ digits
	}
	sats := n.Int64()
	if sats < 0 || sats > maxMoney {
		return 0, &RPCError{RPCTypeError, "Amount out of range"}
	}
	return sats, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}
