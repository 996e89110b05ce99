package loopport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// lowest is the lowest port Pick draws; below it live well-known and
// registered services a machine may run.
const lowest = 10000

// Pick returns k distinct ports of 127.0.0.1 that were free a moment ago,
// drawn at random below the kernel's ephemeral range (falling back to
// port-0 picks where that range leaves less than 1000 ports below it).
// They are held until all k are found, then released for the caller's
// daemons.
func Pick(k int) ([]int, error) {
	hi := EphemeralLow()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, k)
	for tries := 0; len(ports) < k; tries++ {
		addr := "127.0.0.1:0"
		if hi-lowest >= 1000 && tries < 100*k {
			addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(lowest+rand.IntN(hi-lowest)))
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			if addr != "127.0.0.1:0" {
				continue // taken; draw again
			}
			return nil, fmt.Errorf("loopport: pick a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// EphemeralLow is the first port of the kernel's ephemeral range (Linux's
// ip_local_port_range; 32768 where it cannot be read).
func EphemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil || v <= 0 {
		return 32768
	}
	return v
}
