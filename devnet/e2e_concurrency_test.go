package devnet

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testConcurrentDownloads runs 12 downloads at once, 3 streams on each of 4
// isolation pairs, so that streams share circuits and circuits share links,
// and checks every body's checksum and each pair's stream count.
func testConcurrentDownloads(t *testing.T, d *Devnet) {
	const (
		pairs   = 4
		streams = 3
		size    = 4 << 20
	)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	want := demoSum(t, size)
	host, port := hostPort(t, d.WebAddr)
	socks := d.Client.SOCKSAddr().String()

	// Open every stream first, so all 12 are live at the same time.
	type job struct {
		user string
		conn net.Conn
	}
	var jobs []job
	defer func() {
		for _, j := range jobs {
			j.conn.Close()
		}
	}()
	for p := range pairs {
		user := "conc-" + strconv.Itoa(p)
		for range streams {
			c, _, err := socksConnect(ctx, socks, user, "x", host, port)
			if err != nil {
				t.Fatalf("SOCKS CONNECT as %s: %v", user, err)
			}
			jobs = append(jobs, job{user, c})
		}
	}
	for p := range pairs {
		user := "conc-" + strconv.Itoa(p)
		if c, ok := circuitFor(d.Client, user); !ok || c.Streams != streams {
			t.Fatalf("pair %s: circuit %+v (present %v), want %d open streams on one circuit", user, c, ok, streams)
		}
	}

	errs := make(chan error, len(jobs))
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- fetchSum(ctx, j.conn, host, size, want)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// fetchSum sends GET /bytes/size on c and checks the body's SHA-256.
func fetchSum(ctx context.Context, c net.Conn, host string, size int64, want [32]byte) error {
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", size, host); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	if got := [32]byte(h.Sum(nil)); n != size || got != want {
		return fmt.Errorf("got %d bytes with sha256 %x, want %d bytes with %x", n, got, size, want)
	}
	return nil
}
