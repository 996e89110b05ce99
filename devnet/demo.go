package devnet

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
)

// DemoHandler serves devnet's demo site: "/" says hello, "/bytes/N" streams
// N pseudo-random bytes (N up to 1 GiB) that are the same on every request
// (seeded by N), so a download's checksum can be compared with DemoBytes.
func DemoHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "Hello from the co-infuse devnet: this page came to you through a 3-hop onion circuit.")
	})
	mux.HandleFunc("GET /bytes/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.PathValue("n"), 10, 64)
		if err != nil || n < 0 || n > 1<<30 {
			http.Error(w, "want /bytes/N with 0 <= N <= 1073741824", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.CopyN(w, DemoBytes(n), n)
	})
	return mux
}

// DemoBytes is the reader behind /bytes/N. Not for secrets: a fixed seed.
func DemoBytes(n int64) io.Reader {
	return &prngReader{r: rand.NewChaCha8([32]byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})}
}

type prngReader struct{ r *rand.ChaCha8 }

func (p *prngReader) Read(b []byte) (int, error) { return p.r.Read(b) }
