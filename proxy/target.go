package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// maxHostLen is the longest host a SOCKS5 DOMAINNAME can carry.
const maxHostLen = 255

// checkHost vets a host exactly as a client sent it, before it goes to
// Dial or Resolve: 1..255 bytes of letters, digits, '.', '-', '_' (a DNS
// name or IPv4 literal), or an IPv6 literal without zone. It resolves
// nothing; the exit does that. It returns the host in the form a target
// string needs (IPv6 literals keep their text and gain brackets later).
func checkHost(h string) (string, error) {
	if h == "" || len(h) > maxHostLen {
		return "", fmt.Errorf("%w: host length %d", ErrBadTarget, len(h))
	}
	if strings.IndexByte(h, ':') >= 0 {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("%w: host has ':' but is not an IPv6 literal", ErrBadTarget)
		}
		return h, nil
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return "", fmt.Errorf("%w: character not allowed in host", ErrBadTarget)
		}
	}
	return h, nil
}

// joinTarget builds the "host:port" handed to Dial.
func joinTarget(host string, port int) (string, error) {
	h, err := checkHost(host)
	if err != nil {
		return "", err
	}
	if port < 1 || port > 65535 {
		return "", fmt.Errorf("%w: port %d", ErrBadTarget, port)
	}
	return net.JoinHostPort(h, strconv.Itoa(port)), nil
}

// splitAuthority vets an HTTP CONNECT authority "host:port" (IPv6 in
// brackets) and returns it normalised through joinTarget.
func splitAuthority(s string) (string, error) {
	host, portS, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("%w: not host:port", ErrBadTarget)
	}
	if strings.HasPrefix(s, "[") != (strings.IndexByte(host, ':') >= 0) {
		return "", fmt.Errorf("%w: brackets hold only IPv6 literals", ErrBadTarget)
	}
	if portS == "" || len(portS) > 5 || portS[0] == '0' || strings.Trim(portS, "0123456789") != "" {
		return "", fmt.Errorf("%w: port", ErrBadTarget)
	}
	port, _ := strconv.Atoi(portS)
	return joinTarget(host, port)
}
