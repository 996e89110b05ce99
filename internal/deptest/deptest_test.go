package deptest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// entry is one package's row in the table.
type entry struct {
	// imports are the module packages (paths relative to the module) the
	// package may import in non-test code, each with why it may; a reason
	// is required where a rule below would otherwise forbid the import.
	imports map[string]string
	// codec marks a package that only turns bytes into structs and back:
	// it imports the standard library, without I/O, logging or goroutine
	// plumbing, and golang.org/x/crypto/cryptobyte, nothing else.
	codec bool
	// external, if not nil, lists the only third-party packages the
	// package may import (each path with everything below it); nil leaves
	// third-party imports to the global rules.
	external []string
}

// table is the house map of STYLE.md §1, one row per package of the
// module. Imports point down: cmd → devnet → node → proxy, exit, payment,
// circuit/pool → circuit, voucher/*, discovery, lightning → circuit/cell,
// internal/*. A package that is not here fails TestImports until someone
// adds its row.
var table = map[string]entry{
	"cmd/co-infuse": {imports: map[string]string{
		"devnet":    "co-infuse devnet",
		"node":      "every other command",
		"discovery": "peers prints discovery.PeerStatus; init names discovery.ModePrivate",
	}},
	"devnet": {imports: map[string]string{
		"node":             "the nodes it runs",
		"discovery":        "advert roles and modes for the nodes' configs",
		"internal/regtest": "the regtest Lightning network beside the nodes",
		"mempool":          "the delivery nodes' backend config (the regtest btcd)",
		"rendezvous":       "publishes the demo web server as an onion service (keys and ports)",
		"internal/tornet":  "devnet --tor: the private Tor network beside the nodes",
	}},
	"node": {imports: map[string]string{
		"proxy":          "front ends",
		"exit":           "a destination",
		"mempool":        "a destination (delivery role) and the client's private broadcast behind the JSON-RPC port",
		"payment":        "hop session ledger and client prepay schedule",
		"circuit":        "the circuit engine",
		"circuit/pool":   "the client's circuit pool",
		"circuit/cell":   "targets and services",
		"voucher":        "keysets in adverts",
		"voucher/mint":   "the relay's mint",
		"voucher/wallet": "the client's wallet",
		"discovery":      "adverts and path selection",
		"lightning":      "LND for mint and wallet",
		"rendezvous":     "onion services: the rendezvous role and the client's Manager",

		"internal/netclass": "the relay's dial filter refuses the addresses the exit refuses first, by the same classification",
		"internal/torproc":  "the managed tor of the tor section (tor-gateway role, dual publication)",
	}},
	"proxy": {
		imports: map[string]string{
			"circuit/cell": "cell.Target, the one parsed host:port of every layer",
			"circuit":      "circuit's sentinel errors, mapped to SOCKS5 and HTTP reply codes (nothing else of the engine)",

			"internal/onionaddr": ".onion targets checked before any circuit",
		},
		external: []string{"github.com/things-go/go-socks5"},
	},
	"exit": {
		imports: map[string]string{
			"circuit":      "BeginRequest and the sentinels the exit answers with",
			"circuit/cell": "cell.Target",

			"internal/netclass":  "private ranges refused before any rule, shared with the relay's dial filter",
			"internal/onionaddr": "the Tor gateway takes only well-formed v3 .onion targets",
		},
		external: []string{},
	},
	// The mempool destination and client: bytes and funcs only; node
	// hands it circuits (Dial) and wires the Server into the service mux.
	"mempool": {external: []string{
		"github.com/btcsuite/btcd/wire",
		"github.com/btcsuite/btcd/btcjson",
		"github.com/btcsuite/btcd/chaincfg/chainhash",
		"go.etcd.io/bbolt",
	}},
	"payment": {
		imports: map[string]string{
			"circuit":        "hooks of a paid circuit and hop",
			"circuit/cell":   "cookies, services, TOPUP messages",
			"voucher":        "voucher values",
			"voucher/mint":   "redeeming at the hop",
			"voucher/wallet": "spending at the client",
		},
		external: []string{"github.com/libp2p/go-libp2p/core/peer"},
	},
	"circuit/pool": {
		imports: map[string]string{
			"circuit":      "the circuits it holds",
			"circuit/cell": "targets",
		},
		external: []string{"github.com/libp2p/go-libp2p/core/peer"},
	},
	"circuit": {
		imports: map[string]string{"circuit/cell": "the cells it sends"},
		// go-libp2p's core/ interfaces only (STYLE.md §1), and the
		// approved crypto.
		external: []string{
			"github.com/libp2p/go-libp2p/core",
			"github.com/multiformats/go-multiaddr",
			"github.com/flynn/noise",
			"golang.org/x/crypto",
		},
	},
	"rendezvous": {imports: map[string]string{
		"internal/onionaddr": "service ids and .onion addresses of service keys",
		"circuit":            "circuits to intro points, HSDirs and rendezvous points; BeginRequest at the last hop",
		"circuit/cell":       "the rendezvous service's BEGIN targets",
	}},
	"circuit/cell":   {codec: true},
	"voucher":        {},
	"voucher/mint":   {imports: map[string]string{"voucher": "keysets and tokens"}},
	"voucher/wallet": {imports: map[string]string{"voucher": "keysets and tokens"}},
	// Test helpers of the voucher packages.
	"voucher/internal/lnfake":   {},
	"voucher/internal/testkeys": {},
	"discovery": {imports: map[string]string{
		"internal/netclass": "which addresses are private: never grouped by /16 nor advertised unless allow_private_peers",
	}},
	"lightning": {external: []string{
		"github.com/lightningnetwork/lnd/lnrpc",
		"google.golang.org/grpc",
		"gopkg.in/macaroon.v2",
	}},
	"internal/regtest": {imports: map[string]string{
		"lightning":         "drives lnd through our own LND client, the one importer of lnrpc, instead of a second one",
		"internal/loopport": "btcd's and lnd's ports, picked where no port-0 listener can take them first",
	}},
	"internal/regtest/cmd/ensure-daemons": {imports: map[string]string{
		"internal/regtest": "the harness's own command: scripts/test.sh builds btcd and lnd with it before the tests",
	}},
	"internal/deptest": {},
	// Container tests of docker/ (image, compose devnet, packages); its
	// non-test code is doc.go only.
	"docker/dockertest": {imports: map[string]string{}},
	// The one public/private address classification (exit policy, relay
	// dial filter); standard library only.
	"internal/netclass": {external: []string{}},
	// Tor v3 onion address encoding (SOCKS .onion targets, control-port
	// service ids, rendezvous keys); standard library only.
	"internal/onionaddr": {external: []string{}},
	// A managed tor child process (control port, SOCKS client, onion
	// services); standard library only.
	"internal/torproc": {external: []string{}},
	// Ports of 127.0.0.1 for harness daemons, below the ephemeral range;
	// standard library only.
	"internal/loopport": {external: []string{}},
	// A long, fat loopback link for benchmarks (circuit, payment); the
	// standard library and multiaddr only.
	"internal/slowlink": {external: []string{"github.com/multiformats/go-multiaddr"}},
	// A private Tor network on loopback for tests and devnet.
	"internal/tornet": {
		imports: map[string]string{
			"internal/torproc":  "the tors it runs and the clients it hands out",
			"internal/loopport": "the authorities' and relays' ports, named in every torrc before the tors start",
		},
		external: []string{},
	},
}

// pending are rows for packages being created now; only these may be in
// the table without existing.
var pending = map[string]bool{"payment": true, "circuit/pool": true}

// Rules over every package, whatever its row says.
const (
	regtest  = "internal/regtest"
	lnd      = "github.com/lightningnetwork/lnd"
	lnrpc    = "github.com/lightningnetwork/lnd/lnrpc"
	kadDHT   = "github.com/libp2p/go-libp2p-kad-dht"
	codecExt = "golang.org/x/crypto/cryptobyte"
)

// codecStdDenied are standard-library packages a codec may not import:
// they do I/O, log or run goroutines.
var codecStdDenied = []string{"log", "os", "net/http", "sync", "runtime", "syscall", "unsafe", "plugin"}

type listedPackage struct {
	ImportPath string
	Imports    []string
	Module     *struct{ Path string }
	Error      *struct{ Err string }
}

// listModule runs go list over the whole module and returns its packages.
func listModule(t *testing.T) (mod string, pkgs []listedPackage) {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the module's packages: %v", err)
	}
	// The module root is two levels up from internal/deptest.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(goTool, "list", "-e", "-json=ImportPath,Imports,Module,Error", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list ./...: %v\n%s", err, stderr.Bytes())
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p listedPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 || pkgs[0].Module == nil {
		t.Fatalf("go list found no packages of a module in %s", root)
	}
	return pkgs[0].Module.Path, pkgs
}

// under reports whether path is prefix or a package below it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// isInternal reports whether a module-relative path is an internal package.
func isInternal(rel string) bool {
	return rel == "internal" || strings.HasPrefix(rel, "internal/") || strings.Contains(rel, "/internal/") || strings.HasSuffix(rel, "/internal")
}

func isStd(path string) bool { return !strings.Contains(strings.Split(path, "/")[0], ".") }

// TestImports checks the non-test imports of every package of the module
// against table and the rules above. Test files may import anything.
func TestImports(t *testing.T) {
	t.Parallel()
	mod, pkgs := listModule(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		if p.Module == nil || p.Module.Path != mod || !under(p.ImportPath, mod) {
			continue
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, mod), "/")
		seen[rel] = true
		if p.Error != nil {
			t.Errorf("%s: go list: %s (a package that does not list cannot be checked)", rel, p.Error.Err)
		}
		e, ok := table[rel]
		if !ok {
			t.Errorf("%s is not in the dependency table: add a row for it to table in internal/deptest/deptest_test.go, listing the module packages it may import (today: %v)",
				rel, moduleImports(mod, p.Imports))
			continue
		}
		for _, imp := range p.Imports {
			for _, err := range checkImport(mod, rel, e, imp) {
				t.Errorf("%s imports %s: %s", rel, imp, err)
			}
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(table)) {
		if !seen[rel] && !pending[rel] {
			t.Errorf("the dependency table has a row for %s, which is not a package of the module: remove the row or fix its name", rel)
		}
		for _, imp := range slices.Sorted(maps.Keys(table[rel].imports)) {
			if _, ok := table[imp]; !ok {
				t.Errorf("the row for %s allows %s, which has no row of its own: fix the name or add the row", rel, imp)
			}
		}
	}
}

// checkImport returns why package rel (row e) may not import imp, if it
// may not.
func checkImport(mod, rel string, e entry, imp string) []string {
	var errs []string
	switch {
	case under(imp, mod):
		to := strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/")
		why, ok := e.imports[to]
		if !ok {
			errs = append(errs, "not allowed by the dependency table (allowed: "+strings.Join(slices.Sorted(maps.Keys(e.imports)), ", ")+"); if the import belongs, add it to the row with the reason")
		}
		if to == regtest && rel != "devnet" && !under(rel, regtest) {
			errs = append(errs, "devnet is the only non-test importer of internal/regtest (the harness's own commands aside)")
		}
		if isInternal(rel) && !isInternal(to) && why == "" {
			errs = append(errs, "an internal package imports no domain package unless the table says why")
		}
		if e.codec {
			errs = append(errs, "a codec imports only the standard library and "+codecExt)
		}
	case isStd(imp):
		if e.codec {
			for _, d := range codecStdDenied {
				if under(imp, d) {
					errs = append(errs, "a codec does no I/O, logging or goroutine plumbing")
				}
			}
		}
	default:
		if under(imp, lnd) && rel != "lightning" {
			errs = append(errs, "lightning is the only importer of lnd's packages (lnrpc)")
		}
		if under(imp, lnd) && !under(imp, lnrpc) {
			errs = append(errs, "of lnd only the lnrpc packages may be imported; the daemon stays out of our binary")
		}
		if under(imp, kadDHT) && rel != "discovery" {
			errs = append(errs, "discovery is the only importer of go-libp2p-kad-dht")
		}
		if e.codec && imp != codecExt {
			errs = append(errs, "a codec imports only the standard library and "+codecExt)
		}
		if e.external != nil && !slices.ContainsFunc(e.external, func(x string) bool { return under(imp, x) }) {
			errs = append(errs, "third-party package outside the row's list ("+strings.Join(e.external, ", ")+")")
		}
	}
	return errs
}

func moduleImports(mod string, imports []string) []string {
	var out []string
	for _, imp := range imports {
		if under(imp, mod) {
			out = append(out, strings.TrimPrefix(strings.TrimPrefix(imp, mod), "/"))
		}
	}
	return out
}

// TestRules checks checkImport itself on imports the module does not have
// today, so a rule cannot silently stop working.
func TestRules(t *testing.T) {
	t.Parallel()
	const mod = "example.org/m"
	cases := []struct {
		name, rel string
		e         entry
		imp       string
		want      string // substring of the first error; "" for allowed
	}{
		{"allowed module import", "node", entry{imports: map[string]string{"proxy": ""}}, mod + "/proxy", ""},
		{"module import not in row", "proxy", entry{imports: map[string]string{"circuit/cell": ""}}, mod + "/node", "not allowed by the dependency table"},
		{"regtest outside devnet", "node", entry{imports: map[string]string{regtest: "x"}}, mod + "/" + regtest, "only non-test importer of internal/regtest"},
		{"regtest from devnet", "devnet", entry{imports: map[string]string{regtest: ""}}, mod + "/" + regtest, ""},
		{"internal imports domain without reason", "internal/x", entry{imports: map[string]string{"node": ""}}, mod + "/node", "unless the table says why"},
		{"internal imports domain with reason", "internal/x", entry{imports: map[string]string{"node": "because"}}, mod + "/node", ""},
		{"nested internal imports domain", "voucher/internal/x", entry{imports: map[string]string{"voucher": ""}}, mod + "/voucher", "unless the table says why"},
		{"lnrpc outside lightning", "voucher", entry{}, lnrpc + "/routerrpc", "only importer of lnd"},
		{"lnrpc in lightning", "lightning", entry{}, lnrpc, ""},
		{"lnd daemon in lightning", "lightning", entry{}, lnd + "/lnwire", "only the lnrpc packages"},
		{"kad-dht outside discovery", "node", entry{}, kadDHT, "only importer of go-libp2p-kad-dht"},
		{"kad-dht in discovery", "discovery", entry{}, kadDHT + "/providers", ""},
		{"codec imports module", "circuit/cell", entry{codec: true, imports: map[string]string{"voucher": ""}}, mod + "/voucher", "a codec imports only"},
		{"codec imports third party", "circuit/cell", entry{codec: true}, "github.com/libp2p/go-libp2p/core/peer", "a codec imports only"},
		{"codec imports cryptobyte", "circuit/cell", entry{codec: true}, codecExt, ""},
		{"codec logs", "circuit/cell", entry{codec: true}, "log/slog", "no I/O"},
		{"codec opens files", "circuit/cell", entry{codec: true}, "os", "no I/O"},
		{"codec parses numbers", "circuit/cell", entry{codec: true}, "strconv", ""},
		{"external outside list", "circuit", entry{external: []string{"github.com/libp2p/go-libp2p/core"}}, "github.com/libp2p/go-libp2p/p2p/host/basic", "outside the row's list"},
		{"external inside list", "circuit", entry{external: []string{"github.com/libp2p/go-libp2p/core"}}, "github.com/libp2p/go-libp2p/core/host", ""},
		{"empty external list", "exit", entry{external: []string{}}, "github.com/a/b", "outside the row's list"},
		{"nil external list", "node", entry{}, "github.com/a/b", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			errs := checkImport(mod, tc.rel, tc.e, tc.imp)
			switch {
			case tc.want == "" && len(errs) > 0:
				t.Errorf("refused: %v", errs)
			case tc.want != "" && (len(errs) == 0 || !strings.Contains(errs[0], tc.want)):
				t.Errorf("errors %q, want one containing %q", errs, tc.want)
			}
		})
	}
}
