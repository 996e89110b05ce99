package proxy

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

const (
	testRPCUser = "alice"
	testRPCPass = "s3cret"
	testTxID    = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
)

// fakeBroadcaster stands in for node's funcs: it records what the server
// handed it and answers as scripted.
type fakeBroadcaster struct {
	mu    sync.Mutex
	txs   []string   // guarded by mu; hex strings Broadcast got
	rates []*float64 // guarded by mu; their maxFeeRate
	err   error      // guarded by mu; Broadcast's scripted error
	ids   []string   // guarded by mu; Abort's ids
}

func (f *fakeBroadcaster) broadcast(_ context.Context, hexTx string, rate *float64) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.txs = append(f.txs, hexTx)
	f.rates = append(f.rates, rate)
	if f.err != nil {
		return "", f.err
	}
	return testTxID, nil
}

func (f *fakeBroadcaster) info(context.Context) (any, error) {
	recv := int64(1700000100)
	return PrivateBroadcastInfo{Transactions: []PrivateBroadcastTx{{
		TxID: testTxID, WTxID: testTxID, Hex: "00",
		Peers: []PrivateBroadcastPeer{{Address: "12D3KooWpeer", Sent: 1700000000, Received: &recv}},
	}}}, nil
}

func (f *fakeBroadcaster) abort(_ context.Context, id string) (any, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, id)
	if id != testTxID {
		return nil, &RPCError{RPCInvalidAddressOrKey, "Transaction not in private broadcast queue"}
	}
	return AbortedBroadcast{RemovedTransactions: []RemovedBroadcastTx{{TxID: testTxID, WTxID: testTxID, Hex: "00"}}}, nil
}

func (f *fakeBroadcaster) setErr(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeBroadcaster) last() (string, *float64, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.txs) == 0 {
		return "", nil, 0
	}
	return f.txs[len(f.txs)-1], f.rates[len(f.rates)-1], len(f.txs)
}

// rpcTestServer is an RPCServer serving on a loopback port.
type rpcTestServer struct {
	*RPCServer
	url string // http://127.0.0.1:port
	f   *fakeBroadcaster
}

// startRPC starts an RPCServer with user/password auth, a cookie in a
// temporary directory and the fake funcs; edit may change the config.
func startRPC(t *testing.T, edit func(*RPCConfig)) *rpcTestServer {
	t.Helper()
	f := &fakeBroadcaster{}
	cfg := RPCConfig{
		User: testRPCUser, Password: testRPCPass,
		CookiePath:    filepath.Join(t.TempDir(), ".cookie"),
		Broadcast:     f.broadcast,
		BroadcastInfo: f.info,
		Abort:         f.abort,
	}
	if edit != nil {
		edit(&cfg)
	}
	s, err := NewRPC(cfg)
	if err != nil {
		t.Fatalf("NewRPC: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return &rpcTestServer{RPCServer: s, url: "http://" + l.Addr().String(), f: f}
}

// rpcReply is one HTTP exchange's outcome.
type rpcReply struct {
	status int
	header http.Header
	body   string
}

// basicAuth is an Authorization header value.
func basicAuth(userPass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))
}

// postRPC sends body to url with the given Authorization header ("" for
// none) on a client of its own that t closes.
func postRPC(t *testing.T, url, auth, body string) rpcReply {
	t.Helper()
	tr := &http.Transport{Proxy: nil}
	t.Cleanup(tr.CloseIdleConnections)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rpcReply{resp.StatusCode, resp.Header, string(b)}
}
