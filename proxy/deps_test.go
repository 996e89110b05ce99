package proxy

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// checkImports fails if a non-test file of the package in dir imports a
// module-internal or third-party path outside allowed (STYLE.md §1: front
// ends reach the network only through their Config funcs).
func checkImports(t *testing.T, dir string, allowed ...string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
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
				if p == a || strings.HasPrefix(p, a+"/") {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s; allowed: %v", filepath.Base(f), p, allowed)
			}
		}
	}
}

func TestImports(t *testing.T) {
	t.Parallel()
	checkImports(t, ".",
		"github.com/co-infuse/co-infuse/circuit", // sentinels and cell.Target only; never node, exit or the engines
		"github.com/things-go/go-socks5",
	)
}
