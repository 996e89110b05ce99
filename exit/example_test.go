package exit_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/exit"
)

// An operator's rules come first, then (for a devnet) loopback, then the
// default policy.
func ExampleNewPolicy() {
	p, err := exit.NewPolicy([]string{"reject 127.0.0.1:9735", "accept 10.8.0.0/16:8333"}, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range []string{"127.0.0.1:8080", "127.0.0.1:9735", "10.8.1.2:8333", "10.9.1.2:8333", "[::ffff:192.168.1.1]:80", "1.1.1.1:25", "1.1.1.1:443"} {
		err := p.Check(netip.MustParseAddrPort(s))
		fmt.Printf("%-24s refused=%-5v %v\n", s, errors.Is(err, circuit.ErrExitPolicy), err)
	}
	// AllowsPort answers "may some address be reached on this port": here
	// loopback may, on any port; the default policy refuses 25 everywhere.
	fmt.Println("port 25:", p.AllowsPort(25), "default policy port 25:", exit.DefaultPolicy().AllowsPort(25))
	// Output:
	// 127.0.0.1:8080           refused=false <nil>
	// 127.0.0.1:9735           refused=true  exit policy: refused by rule 0 "reject 127.0.0.1/32:9735"
	// 10.8.1.2:8333            refused=false <nil>
	// 10.9.1.2:8333            refused=true  exit policy: refused by rule 5 "reject 10.0.0.0/8:*"
	// [::ffff:192.168.1.1]:80  refused=true  exit policy: refused by rule 13 "reject 192.168.0.0/16:*"
	// 1.1.1.1:25               refused=true  exit policy: refused by rule 33 "reject *:25"
	// 1.1.1.1:443              refused=false <nil>
	// port 25: true default policy port 25: false
}
