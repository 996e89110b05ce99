package devnet

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// garbageCase is one entry of testdata/garbage.json.
type garbageCase struct {
	Name     string `json:"name"`
	Port     string `json:"port"`      // "socks" or "http"
	Hex      string `json:"hex"`       // input bytes, or
	Text     string `json:"text"`      // input text
	Pad      int    `json:"pad"`       // then this many 'a'
	Tail     string `json:"tail"`      // then this text
	TailHex  string `json:"tail_hex"`  // or these bytes
	Want     string `json:"want"`      // reply must start with these bytes (hex)
	WantText string `json:"want_text"` // or with this text
}

func (g garbageCase) input() ([]byte, error) {
	in := []byte(g.Text)
	if g.Hex != "" {
		b, err := hex.DecodeString(g.Hex)
		if err != nil {
			return nil, err
		}
		in = b
	}
	in = append(in, bytes.Repeat([]byte("a"), g.Pad)...)
	in = append(in, g.Tail...)
	tail, err := hex.DecodeString(g.TailHex)
	return append(in, tail...), err
}

func (g garbageCase) want() ([]byte, error) {
	if g.WantText != "" {
		return []byte(g.WantText), nil
	}
	return hex.DecodeString(g.Want)
}

func loadGarbage(t *testing.T) []garbageCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/garbage.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Cases []garbageCase }
	if err := json.Unmarshal(raw, &f); err != nil {
		t.Fatalf("testdata/garbage.json: %v", err)
	}
	if len(f.Cases) == 0 {
		t.Fatal("testdata/garbage.json has no cases")
	}
	return f.Cases
}

// maxGarbageReply bounds what we read back: an error reply is short.
const maxGarbageReply = 64 << 10

// sendGarbage writes in, half-closes, and reads the reply until the server
// closes (EOF or reset) or ctx ends.
func sendGarbage(ctx context.Context, addr string, in []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	// The server may close as soon as it has seen enough; a write error
	// then is an answer too, so keep reading what it sent before.
	_, _ = c.Write(in)
	_ = c.(*net.TCPConn).CloseWrite()
	var out bytes.Buffer
	_, err = io.Copy(&out, io.LimitReader(c, maxGarbageReply))
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		err = nil
	}
	if err == nil && out.Len() == maxGarbageReply {
		err = fmt.Errorf("reply exceeds %d bytes", maxGarbageReply)
	}
	return out.Bytes(), err
}

// testGarbage sends testdata/garbage.json to the SOCKS and HTTP CONNECT
// ports: every input gets an error reply or a close, none hangs, and
// afterwards both ports still carry curl's requests.
func testGarbage(t *testing.T, d *Devnet) {
	addrs := map[string]string{
		"socks": d.Client.SOCKSAddr().String(),
		"http":  d.Client.HTTPAddr().String(),
	}
	t.Run("inputs", func(t *testing.T) {
		for _, g := range loadGarbage(t) {
			t.Run(g.Name, func(t *testing.T) {
				t.Parallel()
				addr, ok := addrs[g.Port]
				if !ok {
					t.Fatalf("unknown port %q", g.Port)
				}
				in, err := g.input()
				if err != nil {
					t.Fatalf("bad input: %v", err)
				}
				want, err := g.want()
				if err != nil {
					t.Fatalf("bad want: %v", err)
				}
				// Well inside the front ends' 30 s handshake timeout: the
				// close must come from the node seeing EOF or bad input.
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				defer cancel()
				got, err := sendGarbage(ctx, addr, in)
				if err != nil {
					t.Fatalf("%s port: no close after garbage (read %x): %v", g.Port, got, err)
				}
				if !bytes.HasPrefix(got, want) {
					t.Fatalf("%s port replied %q (%x), want prefix %q", g.Port, got, got, want)
				}
				switch g.Port {
				case "socks":
					if socksSucceeded(in, got) {
						t.Fatalf("SOCKS port granted a request for garbage: reply %x", got)
					}
				case "http":
					if strings.Contains(string(got), " 200 ") {
						t.Fatalf("HTTP CONNECT port accepted garbage: %q", got)
					}
				}
			})
		}
	})
	t.Run("still serving", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		url := fmt.Sprintf("http://%s/", d.WebAddr)
		for _, proxy := range [][]string{
			{"--socks5-hostname", addrs["socks"]},
			{"-p", "-x", "http://" + addrs["http"]},
		} {
			r := mustCurl(ctx, t, append(proxy, "--max-time", "50", "--proxy-user", "garbage:1", url)...)
			if !strings.HasPrefix(r.stdout, "Hello from the co-infuse devnet") {
				t.Fatalf("page through %v after garbage: %q", proxy, r.stdout)
			}
		}
	})
}

// socksSucceeded reports whether a SOCKS5 reply to in contains a request
// reply with code 0 (success): the method-selection answer (2 bytes, or 4
// with RFC 1929 auth) is followed by a reply 05 00 only on success.
func socksSucceeded(in, got []byte) bool {
	skip := 2
	if len(in) >= 3 && in[2] == 2 {
		skip = 4
	}
	if len(got) < skip+2 {
		return false
	}
	r := got[skip:]
	return r[0] == 5 && r[1] == 0
}
