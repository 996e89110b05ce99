package mempool

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/btcsuite/btcd/btcjson"
)

// The backend client speaks JSON-RPC 1.0 over HTTPS with basic auth, maps
// an error answer to *btcjson.RPCError (so Submit returns the backend's
// code), treats a non-JSON answer as a transport failure, and resumes its
// TLS session on the next connection (btcd closes each one).
func TestBackendRPC(t *testing.T) {
	t.Parallel()
	var conns, resumed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // as btcd: one answer per connection
		if r.TLS != nil && r.TLS.DidResume {
			resumed.Add(1)
		}
		if u, p, ok := r.BasicAuth(); !ok || u != "u" || p != "p" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var req struct {
			Method string            `json:"method"`
			Params []json.RawMessage `json:"params"`
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := json.Unmarshal(body, &req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch req.Method {
		case "sendrawtransaction":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"result":null,"error":{"code":-26,"message":"TX rejected: min relay fee not met"},"id":1}`)
		case "getrawtransaction":
			io.WriteString(w, `{"result":{"confirmations":3},"error":null,"id":1}`)
		default:
			io.WriteString(w, "not json")
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS13}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	certPath := filepath.Join(t.TempDir(), "rpc.cert")
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := NewBackend(BackendConfig{Host: strings.TrimPrefix(srv.URL, "https://"), User: "u", Pass: "p", CertPath: certPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	h, _ := testTx(t, 40, false)
	ck, err := CheckTx(h)
	if err != nil {
		t.Fatal(err)
	}
	v := b.Submit(ctx, Submit{Tx: ck.Raw})
	if v.Status != Rejected || v.Code != -26 || v.Message != "TX rejected: min relay fee not met" {
		t.Fatalf("verdict %+v, want the backend's -26", v)
	}
	if st := b.Lookup(ctx, ck.Hash); st != StateChain {
		t.Fatalf("lookup %v, want in chain", st)
	}
	_, err = b.call(ctx, "other")
	var re *btcjson.RPCError
	if err == nil || errors.As(err, &re) {
		t.Fatalf("non-JSON answer: %v, want a transport error", err)
	}
	if conns.Load() < 3 {
		t.Fatalf("%d connections, want one per call", conns.Load())
	}
	if resumed.Load() == 0 {
		t.Fatal("no call resumed its TLS session")
	}
	bad, err := NewBackend(BackendConfig{Host: strings.TrimPrefix(srv.URL, "https://"), User: "u", Pass: "wrong", CertPath: certPath})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if v := bad.Submit(ctx, Submit{Tx: ck.Raw}); v.Status != Unavailable {
		t.Fatalf("wrong password: %+v, want unavailable", v)
	}
}
