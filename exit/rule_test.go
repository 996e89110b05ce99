package exit

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

type ruleVectors struct {
	Valid []struct {
		In        string `json:"in"`
		Canonical string `json:"canonical"`
	} `json:"valid"`
	Invalid []string `json:"invalid"`
}

func loadRuleVectors(t testing.TB) ruleVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/rules.json")
	if err != nil {
		t.Fatal(err)
	}
	var v ruleVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParseRuleVectors(t *testing.T) {
	t.Parallel()
	v := loadRuleVectors(t)
	for _, tc := range v.Valid {
		t.Run(tc.In, func(t *testing.T) {
			t.Parallel()
			r, err := ParseRule(tc.In)
			if err != nil {
				t.Fatalf("ParseRule: %v", err)
			}
			if got := r.String(); got != tc.Canonical {
				t.Fatalf("String() = %q, want %q", got, tc.Canonical)
			}
			again, err := ParseRule(r.String())
			if err != nil || again != r {
				t.Fatalf("re-parse of %q = %+v, %v; want %+v", r.String(), again, err, r)
			}
		})
	}
	for _, in := range v.Invalid {
		t.Run("invalid/"+in, func(t *testing.T) {
			t.Parallel()
			r, err := ParseRule(in)
			if !errors.Is(err, ErrBadRule) {
				t.Fatalf("ParseRule(%q) = %+v, %v; want ErrBadRule", in, r, err)
			}
		})
	}
}

func FuzzParseRule(f *testing.F) {
	v := loadRuleVectors(f)
	for _, tc := range v.Valid {
		f.Add(tc.In)
	}
	for _, in := range v.Invalid {
		f.Add(in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			if !errors.Is(err, ErrBadRule) {
				t.Fatalf("error %v does not wrap ErrBadRule", err)
			}
			return
		}
		again, err := ParseRule(r.String())
		if err != nil {
			t.Fatalf("canonical form %q of %q does not parse: %v", r.String(), s, err)
		}
		if again != r {
			t.Fatalf("round trip of %q: %+v != %+v", s, again, r)
		}
	})
}
