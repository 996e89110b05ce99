package exit_test

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/co-infuse/co-infuse/circuit"
	"github.com/co-infuse/co-infuse/exit"
)

// Non-public addresses are refused before any rule, so "accept *:443"
// cannot open 10.0.0.5:443; only the separate setting opens a range (here
// loopback, as devnet does), and the rules then judge it like any other.
func ExampleNewPolicy() {
	open, err := exit.ParsePrivateRanges([]string{"loopback"})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := exit.NewPolicy([]string{"reject 127.0.0.1:9735", "accept *:443", "accept *:8080", "reject *:*"}, open)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range []string{"127.0.0.1:8080", "127.0.0.1:9735", "10.0.0.5:443", "[::ffff:192.168.1.1]:443", "[64:ff9b::7f00:1]:8080", "1.1.1.1:25", "1.1.1.1:443"} {
		err := p.Check(netip.MustParseAddrPort(s))
		fmt.Printf("%-24s refused=%-5v %v\n", s, errors.Is(err, circuit.ErrExitPolicy), err)
	}
	// AllowsPort answers "may some address be reached on this port", the
	// summary an exit advertises; the default policy refuses 25 everywhere.
	fmt.Println("port 8080:", p.AllowsPort(8080), "default policy port 25:", exit.DefaultPolicy().AllowsPort(25))
	// Output:
	// 127.0.0.1:8080           refused=false <nil>
	// 127.0.0.1:9735           refused=true  exit policy: refused by rule 0 "reject 127.0.0.1/32:9735"
	// 10.0.0.5:443             refused=true  exit policy: private address (10.0.0.0/8), refused before any rule
	// [::ffff:192.168.1.1]:443 refused=true  exit policy: private address (192.168.0.0/16), refused before any rule
	// [64:ff9b::7f00:1]:8080   refused=true  exit policy: NAT64 address embedding a non-public IPv4 address (loopback, 127.0.0.0/8), refused before any rule
	// 1.1.1.1:25               refused=true  exit policy: refused by rule 3 "reject *:*"
	// 1.1.1.1:443              refused=false <nil>
	// port 8080: true default policy port 25: false
}
