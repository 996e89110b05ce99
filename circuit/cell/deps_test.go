package cell

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the codec pure: its non-test files import only these
// standard-library packages (no I/O, logging, goroutine plumbing or
// third-party code; STYLE.md §1).
func TestImports(t *testing.T) {
	t.Parallel()
	allowed := map[string]bool{
		"bytes":           true,
		"encoding/binary": true,
		"fmt":             true,
		"net/netip":       true,
		"strconv":         true,
		"strings":         true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			if !allowed[path] {
				t.Errorf("%s imports %q; the codec may import only %v", name, path, allowed)
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files found")
	}
}
