package proxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLogsWithholdSecrets drives failures and successes through both front
// ends with debug logging on and checks that no destination or credential
// reaches the log, even when Dial's error text names them.
func TestLogsWithholdSecrets(t *testing.T) {
	t.Parallel()
	var buf lockedBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFakeNet(echoBackend(t))
	f.setErr("secret-refused.example", fmt.Errorf("dial secret-refused.example:443 via 198.51.100.77: %w", circuit.ErrConnRefused))
	f.setErr("secret-nx.example", fmt.Errorf("lookup secret-nx.example: %w", circuit.ErrResolveFailed))
	cfg := Config{Dial: f.dial, Resolve: f.resolve, Logger: logger}
	ss, err := NewSOCKS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := NewHTTPConnect(cfg)
	if err != nil {
		t.Fatal(err)
	}
	socks, httpAddr := serve(t, ss), serve(t, hs)

	for _, host := range []string{"secret-refused.example", "secret-nx.example", "secret-ok.example", "secret bad.example"} {
		c := dialRaw(t, socks)
		c.send(5, 1, 2)
		c.expect(5, 2)
		c.send(append(append([]byte{1, 11}, "secret-user"...), append([]byte{11}, "secret-pass"...)...)...)
		c.expect(1, 0)
		c.send(socksDomain(1, host, 443)...)
		c.read(10)
		_ = c.Close()

		r := dialRaw(t, socks)
		r.send(5, 1, 0)
		r.expect(5, 0)
		r.send(socksDomain(0xF0, host, 0)...)
		r.read(10)
		r.expectClosed(0)

		h := dialRaw(t, httpAddr)
		_, _ = io.WriteString(h, "CONNECT "+strings.ReplaceAll(host, " ", "")+":443 HTTP/1.1\r\nProxy-Authorization: Basic c2VjcmV0LXVzZXI6c2VjcmV0LXBhc3M=\r\n\r\n")
		if line, err := bufio.NewReader(h).ReadString('\n'); err != nil || !strings.HasPrefix(line, "HTTP/1.1 ") {
			t.Fatalf("status line %q, %v", line, err)
		}
		_ = h.Close()
	}
	g := dialRaw(t, httpAddr)
	_, _ = io.WriteString(g, "GET http://secret-get.example/ HTTP/1.1\r\nHost: secret-get.example\r\n\r\n")
	readResponse(t, g)
	b := dialRaw(t, httpAddr)
	_, _ = io.WriteString(b, "BREW secret-brew.example HTTP/9.9 junk\r\n\r\n")
	readResponse(t, b)

	// Close waits for every connection goroutine, so every log line is in.
	_ = ss.Close()
	_ = hs.Close()
	logs := buf.String()
	if !strings.Contains(logs, "subsys=socks") || !strings.Contains(logs, "subsys=httptunnel") {
		t.Fatalf("expected debug lines from both front ends, got:\n%s", logs)
	}
	for _, secret := range []string{"secret", "198.51.100.77"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("log contains %q:\n%s", secret, logs)
		}
	}
}
