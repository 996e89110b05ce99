package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkRPCOverhead measures what the front end adds to one
// sendrawtransaction of a 250-byte transaction: the Broadcast func called
// directly, the same call through ServeHTTP in process (JSON, auth,
// params), and through a loopback HTTP connection with keep-alive.
func BenchmarkRPCOverhead(b *testing.B) {
	hexTx := strings.Repeat("ab", 250)
	body := []byte(`{"jsonrpc":"1.0","id":1,"method":"sendrawtransaction","params":["` + hexTx + `"]}`)
	broadcast := func(context.Context, string, *float64) (string, error) { return testTxID, nil }

	b.Run("direct", func(b *testing.B) {
		ctx := context.Background()
		for b.Loop() {
			if _, err := broadcast(ctx, hexTx, nil); err != nil {
				b.Fatal(err)
			}
		}
	})

	b.Run("handler", func(b *testing.B) {
		s := inMemoryRPC(b)
		s.cfg.Broadcast = broadcast
		for b.Loop() {
			if rec := serveInMemory(s, body); rec.Code != 200 {
				b.Fatalf("status %d", rec.Code)
			}
		}
	})

	b.Run("loopback-http", func(b *testing.B) {
		s := startRPCBench(b, broadcast)
		tr := &http.Transport{Proxy: nil}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		auth := basicAuth(testRPCUser + ":" + testRPCPass)
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodPost, s, bytes.NewReader(body))
			req.Header.Set("Authorization", auth)
			resp, err := c.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}

// startRPCBench serves an RPCServer on loopback for a benchmark and
// returns its URL.
func startRPCBench(b *testing.B, broadcast func(context.Context, string, *float64) (string, error)) string {
	b.Helper()
	s, err := NewRPC(RPCConfig{User: testRPCUser, Password: testRPCPass, Broadcast: broadcast})
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ListenAndServe("") }()
	var url string
	if err := pollUntil(b.Context(), func() bool {
		if a := s.Addr(); a != nil {
			url = "http://" + a.String()
			return true
		}
		return false
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = s.Shutdown(context.Background())
		<-done
	})
	return url
}
