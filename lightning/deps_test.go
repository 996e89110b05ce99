package lightning

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportDirection keeps lightning at the bottom of the house map: it may
// import lnd's RPC stubs, gRPC and the macaroon library, but no co-infuse
// package, and nothing of lnd beyond its RPC packages (the daemon itself
// stays out of our binary).
func TestImportDirection(t *testing.T) {
	t.Parallel()
	pkg, err := build.Import("github.com/co-infuse/co-infuse/lightning", ".", 0)
	if err != nil || len(pkg.Imports) == 0 {
		t.Fatalf("import lightning: %v (%d imports)", err, len(pkg.Imports))
	}
	for _, imp := range pkg.Imports {
		switch {
		case strings.HasPrefix(imp, "github.com/co-infuse/co-infuse"):
			t.Errorf("lightning imports %s: it must not import other co-infuse packages", imp)
		case strings.HasPrefix(imp, "github.com/lightningnetwork/lnd") &&
			!strings.HasPrefix(imp, "github.com/lightningnetwork/lnd/lnrpc"):
			t.Errorf("lightning imports %s: only lnd's lnrpc packages are allowed", imp)
		case !strings.Contains(imp, ".") || // standard library
			strings.HasPrefix(imp, "github.com/lightningnetwork/lnd/lnrpc"),
			strings.HasPrefix(imp, "google.golang.org/grpc"),
			imp == "gopkg.in/macaroon.v2":
		default:
			t.Errorf("lightning imports %s: not in the allowed set", imp)
		}
	}
}
