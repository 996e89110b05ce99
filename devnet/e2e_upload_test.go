package devnet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"
)

// testUpload sends 32 MiB up a circuit to a loopback sink that hashes
// what it receives until EOF: the upstream direction must carry every byte,
// including the last ones queued when the client closes its sending side.
// Circuit streams have no half-close (like Tor's), so the proxy ends the
// whole stream at the client's EOF (docs/PROXY.md); the test checks only
// that the bytes sent before it arrive, then EOF, and says whether an answer
// after half-close came back.
func testUpload(t *testing.T, d *Devnet) {
	const size = 32 << 20
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		n   int64
		sum string
		err error
	}
	got := make(chan result, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer sink.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := sink.Accept()
		if err != nil {
			got <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		h := sha256.New()
		n, err := io.Copy(h, c)
		sum := hex.EncodeToString(h.Sum(nil))
		got <- result{n, sum, err}
		if err == nil {
			io.WriteString(c, sum+" "+strconv.FormatInt(n, 10))
		}
	}()

	host, port := hostPort(t, sink.Addr())
	c, _, err := socksConnect(ctx, d.Client.SOCKSAddr().String(), "upload", "x", host, port)
	if err != nil {
		t.Fatalf("SOCKS CONNECT to the sink: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	src := io.LimitReader(DemoBytes(size), size)
	want := demoSum(t, size)
	if n, err := io.Copy(c, src); err != nil || n != size {
		t.Fatalf("upload: %d bytes, %v", n, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	answer, aerr := io.ReadAll(io.LimitReader(c, 1024))
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		t.Fatalf("the sink never saw the end of the upload: %v", ctx.Err())
	}
	if r.err != nil || r.n != size || r.sum != hex.EncodeToString(want[:]) {
		t.Fatalf("sink received %d bytes with sha256 %s (err %v), want %d bytes with %x", r.n, r.sum, r.err, size, want)
	}
	exp := hex.EncodeToString(want[:]) + " " + strconv.Itoa(size)
	t.Logf("answer after half-close delivered: %v (%q, %v; expected none without stream half-close)", bytes.Equal(answer, []byte(exp)), answer, aerr)
}
