package proxy

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

type resolveVectors struct {
	Valid []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
		Atyp byte   `json:"atyp"`
		Host string `json:"host"`
		Port uint16 `json:"port"`
	} `json:"valid"`
	Invalid []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
	} `json:"invalid"`
}

func loadResolveVectors(t testing.TB) resolveVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/resolve.json")
	if err != nil {
		t.Fatal(err)
	}
	var v resolveVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestResolveRequestVectors decodes each golden RESOLVE request, compares
// it, re-encodes it to the same bytes, and reads it off a stream; the
// must-fail vectors are refused.
func TestResolveRequestVectors(t *testing.T) {
	t.Parallel()
	v := loadResolveVectors(t)
	for _, tc := range v.Valid {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			raw := mustHex(t, tc.Hex)
			r, err := parseResolveRequest(raw)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			want := resolveRequest{Atyp: tc.Atyp, Host: tc.Host, Port: tc.Port}
			if r != want {
				t.Fatalf("parsed %+v, want %+v", r, want)
			}
			enc, err := r.appendBinary(nil)
			if err != nil || !bytes.Equal(enc, raw) {
				t.Fatalf("re-encoded % x, %v; want % x", enc, err, raw)
			}
			// Framing: readResolveRequest takes exactly this request off
			// a stream and leaves what follows.
			br := bufio.NewReader(bytes.NewReader(append(append([]byte{}, raw...), 0xAA)))
			got, err := readResolveRequest(br)
			if err != nil || !bytes.Equal(got, raw) {
				t.Fatalf("read % x, %v; want % x", got, err, raw)
			}
			if next, _ := br.ReadByte(); next != 0xAA {
				t.Fatalf("read past the request")
			}
		})
	}
	for _, tc := range v.Invalid {
		t.Run("invalid/"+tc.Name, func(t *testing.T) {
			t.Parallel()
			r, err := parseResolveRequest(mustHex(t, tc.Hex))
			if !errors.Is(err, errMalformed) {
				t.Fatalf("parse = %+v, %v; want errMalformed", r, err)
			}
		})
	}
}

func FuzzParseResolveRequest(f *testing.F) {
	v := loadResolveVectors(f)
	for _, tc := range v.Valid {
		f.Add(mustHex(f, tc.Hex))
	}
	for _, tc := range v.Invalid {
		f.Add(mustHex(f, tc.Hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseResolveRequest(b)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v does not wrap errMalformed", err)
			}
			return
		}
		enc, err := r.appendBinary(nil)
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode it: %v", r, err)
		}
		again, err := parseResolveRequest(enc)
		if err != nil || again != r {
			t.Fatalf("round trip %+v -> % x -> %+v, %v", r, enc, again, err)
		}
		// Whatever parses also frames: the stream reader takes the same
		// bytes off a stream.
		got, err := readResolveRequest(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("stream read % x, %v; want % x", got, err, b)
		}
	})
}
