package torproc

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

type rw struct {
	io.Reader
	io.Writer
}

func TestSocksHandshake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		reply []byte
		code  int // -1: success; else the SocksError code; -2: other error
	}{
		{"ipv4", []byte{5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 80}, -1},
		{"ipv6", append([]byte{5, 0, 5, 0, 0, 4}, make([]byte, 18)...), -1},
		{"domain", append([]byte{5, 0, 5, 0, 0, 3, 3}, "abc\x00\x50"...), -1},
		{"descriptor not found", []byte{5, 0, 5, 0xF0, 0, 1, 0, 0, 0, 0, 0, 0}, 0xF0},
		{"bad address", []byte{5, 0, 5, 0xF6, 0, 1, 0, 0, 0, 0, 0, 0}, 0xF6},
		{"refused", []byte{5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0}, 5},
		{"auth demanded", []byte{5, 2}, -2},
		{"truncated", []byte{5, 0, 5, 0, 0, 1, 127}, -2},
		{"bad atyp", []byte{5, 0, 5, 0, 0, 9, 0, 0}, -2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sent bytes.Buffer
			err := socksHandshake(rw{bytes.NewReader(tc.reply), &sent}, "example.onion", 80, "")
			want := append([]byte{5, 1, 0, 5, 1, 0, 3, 13}, "example.onion\x00\x50"...)
			if !bytes.Equal(sent.Bytes(), want) {
				t.Errorf("sent %x, want %x", sent.Bytes(), want)
			}
			var se *SocksError
			switch {
			case tc.code == -1 && err != nil:
				t.Fatalf("handshake: %v", err)
			case tc.code >= 0 && (!errors.As(err, &se) || int(se.Code) != tc.code):
				t.Fatalf("handshake = %v, want SocksError %#x", err, tc.code)
			case tc.code == -2 && (err == nil || errors.As(err, &se)):
				t.Fatalf("handshake = %v, want a protocol error", err)
			}
			if se != nil && !strings.Contains(se.Error(), "0x") {
				t.Errorf("%v does not show the code", se)
			}
		})
	}
	if err := socksHandshake(rw{bytes.NewReader(nil), io.Discard}, strings.Repeat("a", 256), 1, ""); err == nil {
		// dialSocks checks the length first; the handshake itself must
		// not be reached with such a name, but must not panic either.
		t.Log("long name reached the handshake")
	}
}

// FuzzSocksReply: any reply bytes; success only for a well-formed zero
// reply, a SocksError carries exactly the reply's code byte, and the
// handshake never reads past the reply.
func FuzzSocksReply(f *testing.F) {
	f.Add([]byte{5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 0, 5, 0xF0, 0, 1, 0, 0, 0, 0, 0, 0})
	f.Add(append([]byte{5, 0, 5, 0, 0, 3, 3}, "abc\x00\x50"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		err := socksHandshake(rw{r, io.Discard}, "x.onion", 80, "")
		var se *SocksError
		switch {
		case err == nil:
			if b[0] != 5 || b[1] != 0 || b[2] != 5 || b[3] != 0 {
				t.Fatalf("accepted %x", b)
			}
		case errors.As(err, &se):
			if len(b) < 4 || se.Code != b[3] || se.Code == 0 {
				t.Fatalf("SocksError %#x from %x", se.Code, b)
			}
		}
	})
}

// TestSocksHandshakeIsolated checks the RFC 1929 exchange that carries a
// stream-isolation key: what is sent, and the replies that must fail.
func TestSocksHandshakeIsolated(t *testing.T) {
	t.Parallel()
	ok := []byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 80}
	for _, tc := range []struct {
		name  string
		reply []byte
		ok    bool
	}{
		{"accepted", append([]byte{5, 2, 1, 0}, ok...), true},
		{"no auth chosen", append([]byte{5, 0}, ok...), false},
		{"auth refused", []byte{5, 2, 1, 1}, false},
		{"bad auth version", []byte{5, 2, 5, 0}, false},
		{"truncated auth", []byte{5, 2, 1}, false},
		{"code after auth", []byte{5, 2, 1, 0, 5, 0xF3, 0, 1, 0, 0, 0, 0, 0, 0}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var sent bytes.Buffer
			err := socksHandshake(rw{bytes.NewReader(tc.reply), &sent}, "x.onion", 80, "key")
			// Each step waits for the previous answer, so a failed step
			// sends nothing after it.
			want := append([]byte{5, 1, 2, 1, 3}, "key\x03key\x05\x01\x00\x03\x07x.onion\x00\x50"...)
			if tc.ok && !bytes.Equal(sent.Bytes(), want) || !bytes.HasPrefix(want, sent.Bytes()) {
				t.Errorf("sent %x, want %x or a prefix of it on failure", sent.Bytes(), want)
			}
			if tc.name == "no auth chosen" && sent.Len() != 3 {
				t.Errorf("sent %x after tor chose no authentication", sent.Bytes())
			}
			if (err == nil) != tc.ok {
				t.Fatalf("handshake = %v, want ok=%v", err, tc.ok)
			}
		})
	}
	var se *SocksError
	err := socksHandshake(rw{bytes.NewReader([]byte{5, 2, 1, 0, 5, 0xF3, 0, 1, 0, 0, 0, 0, 0, 0}), io.Discard}, "x.onion", 80, "key")
	if !errors.As(err, &se) || se.Code != 0xF3 {
		t.Fatalf("handshake = %v, want SocksError 0xf3", err)
	}
}
