package circuit

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the house map true for this package (STYLE.md §1):
// besides the standard library it may import only circuit/cell, go-libp2p's
// core/ interfaces, multiaddr, and the approved crypto modules.
func TestImports(t *testing.T) {
	t.Parallel()
	allowed := []string{
		"github.com/co-infuse/co-infuse/circuit/cell",
		"github.com/libp2p/go-libp2p/core/",
		"github.com/multiformats/go-multiaddr",
		"github.com/flynn/noise",
		"golang.org/x/crypto/",
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, name, src, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !strings.Contains(strings.SplitN(path, "/", 2)[0], ".") {
				continue // standard library
			}
			ok := false
			for _, a := range allowed {
				prefix := strings.TrimSuffix(a, "/") + "/"
				if path == a || strings.HasPrefix(path, prefix) {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}
