package exit

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/co-infuse/co-infuse/circuit"
)

// maxTargetLen caps a target string: a 253-byte name, ":" and five digits,
// with room for a bracketed IPv6 literal.
const maxTargetLen = 253 + 1 + 5

// target is a parsed host:port. Exactly one of addr and name is set.
type target struct {
	addr netip.Addr // IP literal, unmapped
	name string     // DNS name, lower case, without a trailing dot
	port uint16
}

// parseTarget parses host:port strictly: host is a DNS name, an IPv4
// literal, or a bracketed IPv6 literal without zone; port is 1..65535 in
// plain decimal.
func parseTarget(s string) (target, error) {
	var t target
	if len(s) > maxTargetLen {
		return t, fmt.Errorf("%w: %w: target too long", circuit.ErrProtocol, ErrBadTarget)
	}
	host, portS, err := net.SplitHostPort(s)
	if err != nil {
		return t, fmt.Errorf("%w: %w: not host:port", circuit.ErrProtocol, ErrBadTarget)
	}
	port, err := parseDecimal(portS, 65535)
	if err != nil || port == 0 {
		return t, fmt.Errorf("%w: %w: port must be 1..65535", circuit.ErrProtocol, ErrBadTarget)
	}
	t.port = uint16(port)
	bracketed := strings.HasPrefix(s, "[")
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" || bracketed != a.Is6() {
			return t, fmt.Errorf("%w: %w: IPv6 literals go in brackets, without zone", circuit.ErrProtocol, ErrBadTarget)
		}
		t.addr = a.Unmap()
		return t, nil
	}
	if bracketed {
		return t, fmt.Errorf("%w: %w: brackets hold only IPv6 literals", circuit.ErrProtocol, ErrBadTarget)
	}
	if t.name, err = parseHostName(host); err != nil {
		return t, err
	}
	return t, nil
}

// parseHost parses a bare host for Resolve: a name or an IP literal (IPv6
// with or without brackets).
func parseHost(s string) (target, error) {
	var t target
	if len(s) > maxTargetLen {
		return t, fmt.Errorf("%w: %w: host too long", circuit.ErrResolveFailed, ErrBadTarget)
	}
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil {
		if a.Zone() != "" {
			return t, fmt.Errorf("%w: %w: scoped address", circuit.ErrResolveFailed, ErrBadTarget)
		}
		t.addr = a.Unmap()
		return t, nil
	}
	name, err := parseHostName(s)
	t.name = name
	return t, err
}

// parseHostName accepts a DNS name of letters, digits, '-' and '_' in labels
// of 1..63 bytes, at most 253 bytes without the optional trailing dot. It
// refuses .onion (never resolvable in DNS; resolving it would leak it) and a
// numeric last label, which some resolvers read as an IPv4 address in
// another notation ("2130706433", "0x7f.1").
func parseHostName(h string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w: %w: %s", circuit.ErrResolveFailed, ErrBadTarget, why)
	}
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return bad("host name length")
	}
	h = strings.ToLower(h)
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return bad("host name label length")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return bad("host name character")
			}
		}
	}
	last := labels[len(labels)-1]
	if last == "onion" {
		return bad(".onion is not resolvable at an exit")
	}
	if numericLabel(last) {
		return bad("numeric top-level label")
	}
	return h, nil
}

// numericLabel reports whether l looks like a number in any base a
// permissive inet_aton would accept (decimal, octal, 0x hex).
func numericLabel(l string) bool {
	if strings.HasPrefix(l, "0x") {
		l = l[2:]
		if l == "" {
			return true
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
		return true
	}
	for i := 0; i < len(l); i++ {
		if l[i] < '0' || l[i] > '9' {
			return false
		}
	}
	return true
}

// String renders t in the form parseTarget accepts.
func (t target) String() string {
	host := t.name
	if t.addr.IsValid() {
		host = t.addr.String()
	}
	return net.JoinHostPort(host, strconv.Itoa(int(t.port)))
}
