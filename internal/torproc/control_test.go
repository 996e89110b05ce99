package torproc

import (
	"bufio"
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestReadReply(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", maxLineLen+1)
	cases := []struct {
		name string
		in   string
		want reply
		err  error
	}{
		{"ok", "250 OK\r\n", reply{{250, ' ', "OK", nil}}, nil},
		{"getinfo", "250-net/listeners/socks=\"127.0.0.1:9050\"\r\n250 OK\r\n",
			reply{{250, '-', `net/listeners/socks="127.0.0.1:9050"`, nil}, {250, ' ', "OK", nil}}, nil},
		{"data", "250+info=\r\nline one\r\n..dotted\r\n.\r\n250 OK\r\n",
			reply{{250, '+', "info=", []string{"line one", ".dotted"}}, {250, ' ', "OK", nil}}, nil},
		{"error", "552 Unrecognized key \"x\"\r\n", reply{{552, ' ', `Unrecognized key "x"`, nil}}, nil},
		{"lf only", "250 OK\n", reply{{250, ' ', "OK", nil}}, nil},
		{"short", "25\r\n", nil, ErrBadReply},
		{"no code", "abc OK\r\n", nil, ErrBadReply},
		{"bad sep", "250*OK\r\n", nil, ErrBadReply},
		{"code changes", "250-a\r\n251 OK\r\n", nil, ErrBadReply},
		{"line too long", "250 " + long + "\r\n", nil, ErrLineTooLong},
		{"reply too long", strings.Repeat("250-"+strings.Repeat("y", 1000)+"\r\n", 1100) + "250 OK\r\n", nil, ErrReplyTooLong},
		{"truncated", "250-a\r\n", nil, nil},
		{"truncated data", "250+a=\r\nx\r\n", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := readReply(bufio.NewReader(strings.NewReader(tc.in)))
			if tc.want == nil {
				if err == nil {
					t.Fatalf("parsed %v, want an error", got)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("error %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func TestParams(t *testing.T) {
	t.Parallel()
	got := params(`NOTICE BOOTSTRAP PROGRESS=45 TAG=requesting_descriptors SUMMARY="Asking for \"relay\" descriptors"`)
	want := map[string]string{"PROGRESS": "45", "TAG": "requesting_descriptors", "SUMMARY": `Asking for "relay" descriptors`}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	got = params(`METHODS=COOKIE,SAFECOOKIE COOKIEFILE="/x/control_auth_cookie"`)
	if got["METHODS"] != "COOKIE,SAFECOOKIE" || got["COOKIEFILE"] != "/x/control_auth_cookie" {
		t.Fatalf("got %v", got)
	}
}

func TestControlErrorNamesCommand(t *testing.T) {
	t.Parallel()
	err := error(&ControlError{Command: "ADD_ONION", Code: 512, Message: "Bad arguments"})
	if !strings.Contains(err.Error(), "ADD_ONION") || !strings.Contains(err.Error(), "512") {
		t.Fatalf("%v names neither the command nor the code", err)
	}
}

// FuzzReadReply: arbitrary bytes never panic; a reply that parses
// encodes to bytes that parse to the same reply.
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"250 OK\r\n",
		"250-net/listeners/socks=\"127.0.0.1:9050\"\r\n250 OK\r\n",
		"250+info=\r\nline\r\n..d\r\n.\r\n250 OK\r\n",
		"650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=5\r\n",
		"250-PROTOCOLINFO 1\r\n250-AUTH METHODS=COOKIE,SAFECOOKIE COOKIEFILE=\"/a\"\r\n250-VERSION Tor=\"0.4.9\"\r\n250 OK\r\n",
		"515 Authentication failed\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := readReply(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			return
		}
		again, err := readReply(bufio.NewReader(bytes.NewReader(r.encode())))
		if err != nil {
			t.Fatalf("re-encoded reply does not parse: %v", err)
		}
		if !reflect.DeepEqual(r, again) {
			t.Fatalf("round trip: %#v != %#v", r, again)
		}
		r.keyValues()
		for _, l := range r {
			params(l.Text)
		}
	})
}
