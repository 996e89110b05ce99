package regtest

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportDirection: the harness drives LND only through our lightning
// package (the one importer of lnrpc) and imports no other co-infuse package,
// so every engine's tests can use it without a cycle.
func TestImportDirection(t *testing.T) {
	t.Parallel()
	const mod = "github.com/co-infuse/co-infuse/"
	pkg, err := build.Import(mod+"internal/regtest", ".", 0)
	if err != nil || len(pkg.Imports) == 0 {
		t.Fatalf("import regtest: %v (%d imports)", err, len(pkg.Imports))
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, "github.com/lightningnetwork/lnd") {
			t.Errorf("regtest imports %s: reach LND through %slightning", imp, mod)
		}
		if strings.HasPrefix(imp, mod) && imp != mod+"lightning" {
			t.Errorf("regtest imports %s: only %slightning is allowed", imp, mod)
		}
	}
}
