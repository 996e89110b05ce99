package mempool

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// BackendConfig is the delivery node's own bitcoind or btcd RPC, configured
// like any RPC client of it.
type BackendConfig struct {
	// Host is host:port of the RPC server.
	Host string `yaml:"host"`
	// User and Pass authenticate; if Pass is empty, CookiePath is read
	// (bitcoind's .cookie).
	User       string `yaml:"user"`
	Pass       string `yaml:"pass"`
	CookiePath string `yaml:"cookie"`
	// NoTLS speaks plain HTTP (bitcoind; btcd with --notls). Otherwise
	// TLS with the certificate at CertPath (btcd's rpc.cert).
	NoTLS    bool   `yaml:"notls"`
	CertPath string `yaml:"cert"`
}

// Validate names the first missing or contradictory field.
func (c BackendConfig) Validate() error {
	switch {
	case c.Host == "":
		return errors.New("host: must be set")
	case c.Pass == "" && c.CookiePath == "":
		return errors.New("pass or cookie: one must be set")
	case !c.NoTLS && c.CertPath == "":
		return errors.New("cert: needed unless notls is true")
	}
	return nil
}

// Backend hands transactions to a bitcoind or btcd over its JSON-RPC
// (HTTP POST, as btcd's rpcclient sends it; rpcConn) and maps its answers
// to verdicts whose codes are the backend's own (bitcoind's codes; btcd
// uses the same).
type Backend struct {
	rpc *rpcConn
}

// NewBackend makes the RPC client; it does not connect until used.
func NewBackend(cfg BackendConfig) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mempool backend: %w", err)
	}
	c, err := newRPCConn(cfg)
	if err != nil {
		return nil, fmt.Errorf("mempool backend: %w", err)
	}
	return &Backend{rpc: c}, nil
}

// Close drops the RPC client's idle connections. Safe to call twice.
func (b *Backend) Close() error {
	b.rpc.close()
	return nil
}

// call runs one RPC; it ends with ctx.
func (b *Backend) call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	raw := make([]json.RawMessage, len(params))
	for i, p := range params {
		j, err := json.Marshal(p)
		if err != nil {
			return nil, err
		}
		raw[i] = j
	}
	return b.rpc.call(ctx, method, raw)
}

// maxFeeExceeded is bitcoind's message when a transaction's fee rate is
// over the caller's maxfeerate (TransactionError::MAX_FEE_EXCEEDED).
const maxFeeExceeded = "Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)"

// Submit is ServerConfig.Submit: sendrawtransaction, after
// testmempoolaccept with the client's fee-rate cap when it set one above
// 0. A transaction the backend already has in its mempool is Accepted (as
// bitcoind's sendrawtransaction answers it with the txid; btcd says
// "already have transaction in mempool"); any other RPC error is Rejected
// with the backend's code and message; a transport failure is
// Unavailable.
func (b *Backend) Submit(ctx context.Context, s Submit) Verdict {
	h := hex.EncodeToString(s.Tx)
	if s.HasMaxFeeRate && s.MaxFeeRate > 0 {
		v, err := b.call(ctx, "testmempoolaccept", []string{h}, float64(s.MaxFeeRate)/1e8)
		if err != nil {
			return b.failed(ctx, err, s.Tx)
		}
		var res []struct {
			Allowed bool   `json:"allowed"`
			Reason  string `json:"reject-reason"`
		}
		if json.Unmarshal(v, &res) == nil && len(res) == 1 && !res[0].Allowed && strings.Contains(res[0].Reason, "max-fee-exceeded") {
			return Verdict{Status: Rejected, Code: CodeVerify, Message: maxFeeExceeded}
		}
	}
	// The cap also goes with sendrawtransaction (bitcoind's maxfeerate,
	// BTC/kvB; btcd ≥ 0.24 takes the same number), so 0 means no limit
	// and a cap above the backend's default is honoured, not replaced by
	// that default.
	args := []any{h}
	if s.HasMaxFeeRate {
		args = append(args, float64(s.MaxFeeRate)/1e8)
	}
	if _, err := b.call(ctx, "sendrawtransaction", args...); err != nil {
		return b.failed(ctx, err, s.Tx)
	}
	return Verdict{Status: Accepted}
}

// failed turns a backend error into a verdict.
func (b *Backend) failed(ctx context.Context, err error, tx []byte) Verdict {
	var re *btcjson.RPCError
	if !errors.As(err, &re) {
		return Verdict{Status: Unavailable}
	}
	code := int32(re.Code)
	if code >= 0 {
		code = CodeMisc
	}
	msg := re.Message
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "already have transaction in mempool") || strings.Contains(lower, "txn-already-in-mempool"):
		// btcd answers a transaction already in its mempool with an
		// error; bitcoind with the txid. Either way it is there.
		return Verdict{Status: Accepted}
	case strings.Contains(lower, "already have transaction"):
		// Older btcd: in the mempool or among its orphans. Ask.
		if c, cerr := CheckRawTx(tx); cerr == nil && b.Lookup(ctx, c.Hash) == StateMempool {
			return Verdict{Status: Accepted}
		}
	}
	return Verdict{Status: Rejected, Code: code, Message: cleanMessage(msg)}
}

// cleanMessage makes s a valid verdict message: printable ASCII, at most
// MaxMessageLen bytes.
func cleanMessage(s string) string {
	b := make([]byte, 0, min(len(s), MaxMessageLen))
	for i := 0; i < len(s) && len(b) < MaxMessageLen; i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			c = ' '
		}
		b = append(b, c)
	}
	return string(b)
}

// Lookup is ServerConfig.Lookup: getrawtransaction, which bitcoind and
// btcd answer from the mempool first, then (with a txindex) from the
// chain; without a txindex a confirmed transaction reads as unknown.
func (b *Backend) Lookup(ctx context.Context, txid [32]byte) TxState {
	id := chainhash.Hash(txid).String()
	v, err := b.call(ctx, "getrawtransaction", id, 1)
	if err != nil {
		if isRPCError(err) {
			return StateUnknown
		}
		return StateUnavailable
	}
	var res struct {
		Confirmations int64 `json:"confirmations"`
	}
	if err := json.Unmarshal(v, &res); err != nil {
		return StateUnavailable
	}
	if res.Confirmations > 0 {
		return StateChain
	}
	return StateMempool
}

func isRPCError(err error) bool {
	var re *btcjson.RPCError
	return errors.As(err, &re)
}
