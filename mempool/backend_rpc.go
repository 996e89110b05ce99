package mempool

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"

	"github.com/btcsuite/btcd/btcjson"
)

// maxBackendResponse caps one answer of the backend: a verbose
// getrawtransaction of the largest transaction is a few MB.
const maxBackendResponse = 16 << 20

// backendSessions is how many TLS sessions the backend client keeps for
// resumption (one server, a few tickets).
const backendSessions = 8

// backendConns caps calls in flight to the backend; more wait (under
// their ctx). btcd serves at most 10 RPC clients at once (rpcmaxclients)
// and refuses the rest, and the operator's own software uses it too.
const backendConns = 2

// rpcConn is a delivery node's JSON-RPC 1.0 client of its own bitcoind or
// btcd: one HTTP POST per call, as btcd's rpcclient sends them, with two
// differences. A call ends with its ctx. And TLS sessions are resumed:
// btcd closes its RPC connection after every answer, so each call is a
// new TLS connection; resuming skips the certificate's signature (btcd's
// P-521 key), the larger part of a handshake's CPU at both ends.
type rpcConn struct {
	url        string
	user, pass string
	cookie     string // read at each call when pass is empty (rewritten at each start of bitcoind)
	hc         *http.Client
	slots      chan struct{} // backendConns
	id         atomic.Uint64
}

func newRPCConn(cfg BackendConfig) (*rpcConn, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: 4}
	scheme := "http"
	if !cfg.NoTLS {
		pem, err := os.ReadFile(cfg.CertPath)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cert %s: no PEM certificate", cfg.CertPath)
		}
		tr.TLSClientConfig = &tls.Config{
			RootCAs:            pool,
			MinVersion:         tls.VersionTLS12,
			ClientSessionCache: tls.NewLRUClientSessionCache(backendSessions),
		}
		scheme = "https"
	}
	return &rpcConn{
		url:  scheme + "://" + cfg.Host + "/",
		user: cfg.User, pass: cfg.Pass, cookie: cfg.CookiePath,
		hc:    &http.Client{Transport: tr, Timeout: DefaultBackendTimeout},
		slots: make(chan struct{}, backendConns),
	}, nil
}

func (r *rpcConn) close() { r.hc.CloseIdleConnections() }

func (r *rpcConn) auth() (string, string, error) {
	if r.pass != "" {
		return r.user, r.pass, nil
	}
	raw, err := os.ReadFile(r.cookie)
	if err != nil {
		return "", "", fmt.Errorf("cookie: %w", err)
	}
	u, p, ok := strings.Cut(strings.TrimSpace(string(raw)), ":")
	if !ok {
		return "", "", errors.New("cookie: not user:password")
	}
	return u, p, nil
}

// call sends one request and returns its result, a *btcjson.RPCError
// for the backend's error answer, or another error for a transport
// failure.
func (r *rpcConn) call(ctx context.Context, method string, params []json.RawMessage) (json.RawMessage, error) {
	body, err := json.Marshal(struct {
		JSONRPC string            `json:"jsonrpc"`
		Method  string            `json:"method"`
		Params  []json.RawMessage `json:"params"`
		ID      uint64            `json:"id"`
	}{"1.0", method, params, r.id.Add(1)})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	u, p, err := r.auth()
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(u, p)
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-r.slots }()
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Result json.RawMessage   `json:"result"`
		Error  *btcjson.RPCError `json:"error"`
	}
	// bitcoind answers errors with HTTP 500 or 404 and a JSON body; a body
	// that is not JSON-RPC (401, a proxy's page) is a transport failure.
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBackendResponse)).Decode(&out); err != nil {
		return nil, fmt.Errorf("backend answered HTTP %d: %w", resp.StatusCode, err)
	}
	if out.Error != nil {
		return nil, out.Error
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("backend answered HTTP %d", resp.StatusCode)
	}
	return out.Result, nil
}
