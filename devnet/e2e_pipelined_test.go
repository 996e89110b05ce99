package devnet

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// testPipelined sends everything in one write, before any reply: the SOCKS5
// greeting, auth, CONNECT and the HTTP request behind it; and the HTTP
// CONNECT head with the HTTP request right behind it. Clients that send
// optimistic data work this way; the bytes after the request must reach the
// target once the stream is open, not be dropped or mistaken for protocol.
func testPipelined(t *testing.T, d *Devnet) {
	host, port := hostPort(t, d.WebAddr)
	const size = 100000
	req := fmt.Sprintf("GET /bytes/%d HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", size, host)

	t.Run("socks", func(t *testing.T) {
		var b []byte
		b = append(b, 5, 1, 2)                          // greeting: user/pass
		b = append(b, 1, 4, 'p', 'i', 'p', 'e', 1, 'x') // RFC 1929
		b = append(b, 5, 1, 0, 3, byte(len(host)))      // CONNECT, domain
		b = binary.BigEndian.AppendUint16(append(b, host...), port)
		b = append(b, req...)
		br := sendAll(t, d.Client.SOCKSAddr().String(), b)
		var head [2 + 2 + 10]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			t.Fatalf("SOCKS replies: %v", err)
		}
		if !bytes.Equal(head[:5], []byte{5, 2, 1, 0, 5}) || head[5] != 0 {
			t.Fatalf("SOCKS replies %x, want method 02, auth ok, CONNECT succeeded", head)
		}
		checkBytesResponse(t, br, size)
	})

	t.Run("http connect", func(t *testing.T) {
		b := []byte(fmt.Sprintf("CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\nProxy-Authorization: Basic cGlwZTp4\r\n\r\n", d.WebAddr))
		b = append(b, req...)
		br := sendAll(t, d.Client.HTTPAddr().String(), b)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatalf("CONNECT response: %v", err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("CONNECT status %s", resp.Status)
		}
		checkBytesResponse(t, br, size)
	})
}

// sendAll dials addr, writes b in one call and returns a reader of the
// reply; the conn closes with the test.
func sendAll(t *testing.T, addr string, b []byte) *bufio.Reader {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return bufio.NewReader(c)
}

// checkBytesResponse reads an HTTP response for /bytes/size from br and
// compares the body with DemoBytes.
func checkBytesResponse(t *testing.T, br *bufio.Reader, size int64) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("HTTP response through the stream: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, size+1))
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	want := make([]byte, size)
	io.ReadFull(DemoBytes(size), want)
	if !bytes.Equal(body, want) {
		t.Fatalf("body of %d bytes differs from DemoBytes(%d)", len(body), size)
	}
}
