package proxy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// rpcVector is one request and the exact reply, from
// testdata/rpc_vectors.json.
type rpcVector struct {
	Name    string `json:"name"`
	Request string `json:"request"`
	Status  int    `json:"status"`
	Reply   string `json:"reply"`
}

func loadRPCVectors(t testing.TB) []rpcVector {
	t.Helper()
	b, err := os.ReadFile("testdata/rpc_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []rpcVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

// roundTripFunc is an in-memory http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// inMemoryRPC is an RPCServer whose upstream is a fakeUpstream reached
// without a network, for the vectors and the fuzz target.
func inMemoryRPC(t testing.TB) *RPCServer {
	t.Helper()
	f := &fakeBroadcaster{}
	s, err := NewRPC(RPCConfig{
		User: testRPCUser, Password: testRPCPass,
		Broadcast: f.broadcast, BroadcastInfo: f.info, Abort: f.abort,
		Upstream: &RPCUpstream{URL: "127.0.0.1:1", User: "up", Password: "pw"},
		MaxBatch: 50, AuthFailures: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	up := &fakeUpstream{userPass: "up:pw"}
	s.up.client.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		up.serve(rec, r)
		return rec.Result(), nil
	})
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func serveInMemory(s *RPCServer, body []byte) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	req.Header.Set("Authorization", basicAuth(testRPCUser+":"+testRPCPass))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// TestRPCVectors checks the golden request/reply pairs.
func TestRPCVectors(t *testing.T) {
	t.Parallel()
	s := inMemoryRPC(t)
	for _, v := range loadRPCVectors(t) {
		rec := serveInMemory(s, []byte(v.Request))
		want := v.Reply
		if want != "" {
			want += "\n"
		}
		if rec.Code != v.Status || rec.Body.String() != want {
			t.Errorf("%s:\n got %d %s\nwant %d %s", v.Name, rec.Code, rec.Body.String(), v.Status, v.Reply)
		}
	}
}

// FuzzRPCHandler decodes arbitrary bodies through the whole handler, with
// fake funcs and an in-memory upstream: no panic, a status bitcoind uses,
// and a reply that is JSON (an array for a batch answered with 200) or
// nothing.
func FuzzRPCHandler(f *testing.F) {
	for _, v := range loadRPCVectors(f) {
		f.Add([]byte(v.Request))
	}
	f.Add([]byte(`[{"method":"abortprivatebroadcast","params":{"id":"` + strings.Repeat("ab", 32) + `"},"id":{}}]`))
	f.Add([]byte(`{"method":"getprivatebroadcastinfo","params":{},"id":null,"jsonrpc":"2.0"}`))
	f.Add([]byte(`{"method":"sendrawtransaction","params":["00",1e400,"-0"],"id":1}`))
	s := inMemoryRPC(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := serveInMemory(s, body)
		switch rec.Code {
		case 200, 204, 400, 404, 500:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		out := rec.Body.Bytes()
		if rec.Code == 204 {
			if len(out) != 0 {
				t.Fatalf("204 with a body: %q", out)
			}
			return
		}
		if !json.Valid(out) {
			t.Fatalf("reply is not JSON: %q for %q", out, body)
		}
		trimmed := bytes.TrimLeft(body, " \t\r\n")
		if rec.Code == 200 && json.Valid(body) && len(trimmed) > 0 && trimmed[0] == '[' && out[0] != '[' {
			t.Fatalf("batch answered with %q", out)
		}
		if utf8.Valid(body) && !utf8.Valid(out) {
			t.Fatalf("reply not UTF-8: %q", out)
		}
	})
}
