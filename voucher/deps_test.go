package voucher

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportDirection keeps the house map true for voucher and its
// subpackages: they never import lnrpc or our lightning/ package (Lightning
// reaches them through Config funcs), nor any engine above or beside them.
func TestImportDirection(t *testing.T) {
	t.Parallel()
	const mod = "github.com/co-infuse/co-infuse/"
	forbidden := []string{
		"github.com/lightningnetwork/lnd/lnrpc",
		mod + "lightning", mod + "circuit", mod + "discovery", mod + "node",
		mod + "proxy", mod + "mempool", mod + "rendezvous", mod + "exit", mod + "cmd",
	}
	seen := map[string]bool{}
	queue := []string{mod + "voucher", mod + "voucher/mint", mod + "voucher/wallet"}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		pkg, err := build.Import(p, ".", 0)
		if err != nil || len(pkg.Imports) == 0 {
			t.Fatalf("import %s: %v (%d imports)", p, err, len(pkg.Imports))
		}
		for _, imp := range pkg.Imports {
			for _, f := range forbidden {
				if imp == f || strings.HasPrefix(imp, f+"/") {
					t.Errorf("%s imports %s", p, imp)
				}
			}
			if strings.HasPrefix(imp, mod) {
				queue = append(queue, imp)
			}
		}
	}
}
