package payment

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
// besides the standard library it may import only circuit and its cell
// codecs, the wallet (for its ErrInsufficient sentinel) and go-libp2p's
// peer IDs. Mints, wallets and Lightning are reached through Config funcs.
func TestImports(t *testing.T) {
	t.Parallel()
	allowed := []string{
		"github.com/co-infuse/co-infuse/circuit",
		"github.com/co-infuse/co-infuse/circuit/cell",
		"github.com/co-infuse/co-infuse/voucher/wallet",
		"github.com/libp2p/go-libp2p/core/peer",
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
				if path == a {
					ok = true
				}
			}
			if !ok {
				t.Errorf("%s imports %s", name, path)
			}
		}
	}
}
