package exit

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	"github.com/co-infuse/co-infuse/circuit"
)

type targetVectors struct {
	Valid []struct {
		In        string `json:"in"`
		Canonical string `json:"canonical"`
	} `json:"valid"`
	Invalid []string `json:"invalid"`
}

func loadTargetVectors(t testing.TB) targetVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/targets.json")
	if err != nil {
		t.Fatal(err)
	}
	var v targetVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseTargetVectors(t *testing.T) {
	t.Parallel()
	v := loadTargetVectors(t)
	for _, tc := range v.Valid {
		t.Run(tc.In, func(t *testing.T) {
			t.Parallel()
			got, err := parseTarget(tc.In)
			if err != nil {
				t.Fatalf("parseTarget: %v", err)
			}
			if got.String() != tc.Canonical {
				t.Fatalf("String() = %q, want %q", got.String(), tc.Canonical)
			}
			again, err := parseTarget(got.String())
			if err != nil || again != got {
				t.Fatalf("re-parse = %+v, %v; want %+v", again, err, got)
			}
		})
	}
	for _, in := range v.Invalid {
		t.Run("invalid/"+in, func(t *testing.T) {
			t.Parallel()
			got, err := parseTarget(in)
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("parseTarget(%q) = %+v, %v; want ErrBadTarget", in, got, err)
			}
			if !errors.Is(err, circuit.ErrProtocol) && !errors.Is(err, circuit.ErrResolveFailed) {
				t.Fatalf("error %v wraps neither ErrProtocol nor ErrResolveFailed", err)
			}
		})
	}
}

func FuzzParseTarget(f *testing.F) {
	v := loadTargetVectors(f)
	for _, tc := range v.Valid {
		f.Add(tc.In)
	}
	for _, in := range v.Invalid {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTarget(s)
		if err != nil {
			if !errors.Is(err, ErrBadTarget) {
				t.Fatalf("error %v does not wrap ErrBadTarget", err)
			}
			return
		}
		if got.addr.IsValid() == (got.name != "") || got.port == 0 {
			t.Fatalf("parsed %+v: want exactly one of addr and name, and a port", got)
		}
		again, err := parseTarget(got.String())
		if err != nil || again != got {
			t.Fatalf("round trip %q -> %q -> %+v, %v; want %+v", s, got.String(), again, err, got)
		}
	})
}
