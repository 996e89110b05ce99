package pool

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the pool where the house map puts it (STYLE.md §1):
// above circuit, below node; besides the standard library it imports only
// circuit and go-libp2p's peer IDs. Paths come from a hook, not from
// discovery; payment is a hook too.
func TestImports(t *testing.T) {
	t.Parallel()
	allowed := []string{
		"github.com/co-infuse/co-infuse/circuit",
		"github.com/libp2p/go-libp2p/core/peer",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !strings.Contains(strings.Split(p, "/")[0], ".") {
				continue // standard library
			}
			ok := false
			for _, a := range allowed {
				ok = ok || p == a
			}
			if !ok {
				t.Errorf("%s imports %s", f, p)
			}
		}
	}
}
