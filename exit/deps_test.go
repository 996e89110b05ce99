package exit

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the exit a leaf destination (STYLE.md §1): standard
// library plus circuit's sentinels and cell's Target, nothing above it
// (node, proxy) and no sideways engine (mempool, rendezvous).
func TestImports(t *testing.T) {
	t.Parallel()
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
			if strings.Contains(strings.Split(p, "/")[0], ".") && p != "github.com/co-infuse/co-infuse/circuit" && p != "github.com/co-infuse/co-infuse/circuit/cell" {
				t.Errorf("%s imports %s; exit may import only the standard library, circuit and circuit/cell", f, p)
			}
		}
	}
}
