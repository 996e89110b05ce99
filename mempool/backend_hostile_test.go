package mempool

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestBackendHostileAnswers: a backend (or whatever answers at its
// address) cannot pin a delivery node's call. A well-formed answer larger
// than maxBackendResponse is read up to it and refused; one that drips is given
// up when the call's ctx ends (the server's BackendTimeout), and the
// call's connection slot is free again for the next call.
func TestBackendHostileAnswers(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, _ := r.BasicAuth()
		fl := w.(http.Flusher)
		switch u {
		case "huge":
			w.Write([]byte(`{"result":"`))
			chunk := []byte(strings.Repeat("a", 64<<10))
			for range (maxBackendResponse / len(chunk)) + 16 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			w.Write([]byte(`","error":null,"id":1}`)) // valid, only too large
		case "drip":
			w.Write([]byte(`{"result":`))
			fl.Flush()
			select {
			case <-r.Context().Done():
			case <-stop:
			}
		}
	}))
	defer srv.Close()
	defer close(stop)
	host := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []string{"huge", "drip"} {
		b, err := NewBackend(BackendConfig{Host: host, User: tc, Pass: "p", NoTLS: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := range backendConns + 1 { // more calls than slots: each gave its slot back
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			_, err := b.call(ctx, "getrawtransaction", "00")
			ended := ctx.Err() != nil
			cancel()
			if err == nil {
				t.Fatalf("%s answer, call %d: no error", tc, i)
			}
			if tc == "drip" && !errors.Is(err, context.DeadlineExceeded) && !ended {
				t.Fatalf("drip answer, call %d: %v before the ctx's deadline", i, err)
			}
		}
		b.Close()
	}
}
