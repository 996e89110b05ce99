package cell

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxNameLen is the longest DNS name in text form, without the trailing dot
// (RFC 1035 §2.3.4: 255 octets on the wire).
const maxNameLen = 253

// maxLabelLen is the longest DNS label (RFC 1035 §2.3.4).
const maxLabelLen = 63

// Target is where a stream goes: a host and a port, parsed once at the front
// end and passed on unchanged to the last hop (PROTOCOL.md §5 BEGIN). The
// grammar, shared by ParseTarget, NewTarget and CheckHost:
//
//	target = host ":" port | "[" ipv6 "]" ":" port   ; ParseTarget
//	host   = name | ipv4 | ipv6                      ; NewTarget, CheckHost (no brackets)
//	name   = label *("." label) ["."]                ; 1..253 bytes without the dot
//	label  = 1*63( ALPHA | DIGIT | "-" | "_" )
//	port   = 1..65535 in decimal, no sign, no leading zero
//
// A name's last label must not be numeric (all digits, or "0x" and hex
// digits): no top-level domain is, and a resolver that follows inet_aton
// would read "2130706433" or "0x7f.1" as an IPv4 address. ipv4 is a dotted
// quad without leading zeros; ipv6 is any RFC 4291 text form without a zone,
// and goes in brackets exactly when a port follows it. Everything else is
// refused with an error wrapping ErrBadTarget (ErrBadHost for CheckHost).
//
// The canonical form, which String returns and BEGIN carries, is lower case
// without the trailing dot for a name, and netip's form for an IP literal
// (RFC 5952 for IPv6) with an IPv4-mapped IPv6 address written as IPv4. It
// is at most MaxTargetLen bytes (BEGIN's target_len is one byte), so a name
// of 250..253 bytes fits only with a short port.
//
// Targets are comparable: two are == exactly when their canonical forms are
// equal. The zero Target is not a valid target (IsZero); no constructor
// returns it without an error.
type Target struct {
	host string     // canonical host, never bracketed; "" only in the zero Target
	addr netip.Addr // the host as an IP literal (unmapped, no zone); invalid for a name
	port uint16     // 1..65535; 0 only in the zero Target
}

// ParseTarget parses "host:port", with an IPv6 literal in brackets, as a
// client or an HTTP CONNECT authority writes it (see Target for the grammar).
// It resolves nothing. Errors wrap ErrBadTarget and never quote s.
func ParseTarget(s string) (Target, error) {
	if len(s) > 2*MaxTargetLen {
		return Target{}, targetErr("longer than %d bytes", MaxTargetLen)
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return Target{}, targetErr("not host:port")
	}
	host, portS := s[:i], s[i+1:]
	port, err := parsePort(portS)
	if err != nil {
		return Target{}, err
	}
	if strings.HasPrefix(host, "[") {
		if !strings.HasSuffix(host, "]") {
			return Target{}, targetErr("unclosed bracket")
		}
		host = host[1 : len(host)-1]
		if strings.IndexByte(host, ':') < 0 {
			return Target{}, targetErr("brackets hold only IPv6 literals")
		}
	} else if strings.IndexByte(host, ':') >= 0 {
		return Target{}, targetErr("an IPv6 literal needs brackets")
	}
	return newTarget(host, port)
}

// NewTarget builds a Target from a bare host (a name, an IPv4 literal or an
// IPv6 literal without brackets, as a SOCKS5 request carries it) and a port
// in 1..65535. Errors wrap ErrBadTarget and never quote host.
func NewTarget(host string, port uint16) (Target, error) {
	if port == 0 {
		return Target{}, targetErr("port 0")
	}
	return newTarget(host, port)
}

// newTarget checks host and the length of the result; port is 1..65535.
func newTarget(host string, port uint16) (Target, error) {
	h, a, why := checkHost(host)
	if why != "" {
		return Target{}, targetErr("%s", why)
	}
	t := Target{host: h, addr: a, port: port}
	if n := t.len(); n > MaxTargetLen {
		return Target{}, targetErr("%d bytes, longer than %d", n, MaxTargetLen)
	}
	return t, nil
}

// CheckHost vets a bare host with the host grammar of Target (a name, an
// IPv4 literal or an unbracketed IPv6 literal without zone) and returns its
// canonical form. It is for RESOLVE, which names a host without a port.
// Errors wrap ErrBadHost and never quote h.
func CheckHost(h string) (string, error) {
	c, _, why := checkHost(h)
	if why != "" {
		return "", fmt.Errorf("host: %w: %s", ErrBadHost, why)
	}
	return c, nil
}

// parseCanonicalTarget parses a BEGIN target, which must already be in
// canonical form, so that every accepted encoding is the only one.
func parseCanonicalTarget(s string) (Target, error) {
	t, err := ParseTarget(s)
	if err != nil {
		return Target{}, err
	}
	if t.String() != s {
		return Target{}, targetErr("not in canonical form")
	}
	return t, nil
}

// Host returns the canonical host: a lower-case name without trailing dot,
// or an IP literal (IPv6 without brackets). It is "" for the zero Target.
func (t Target) Host() string { return t.host }

// Port returns the port, 1..65535 (0 for the zero Target).
func (t Target) Port() uint16 { return t.port }

// Addr returns the host as an address and true when it is an IP literal;
// the address is never IPv4-mapped and has no zone.
func (t Target) Addr() (netip.Addr, bool) { return t.addr, t.addr.IsValid() }

// IsOnion reports whether the host is a name ending in ".onion" (any case
// was accepted; the canonical form is lower case). It says nothing about
// whether the onion address itself is well formed.
func (t Target) IsOnion() bool { return strings.HasSuffix(t.host, ".onion") }

// IsZero reports whether t is the zero Target, which no constructor returns.
func (t Target) IsZero() bool { return t.port == 0 }

// String returns the canonical "host:port" ("[ipv6]:port" for IPv6), which
// ParseTarget parses back to t; "" for the zero Target. It contains the
// destination: never log it.
func (t Target) String() string {
	if t.IsZero() {
		return ""
	}
	b := make([]byte, 0, t.len())
	if t.addr.Is6() {
		b = append(b, '[')
		b = append(b, t.host...)
		b = append(b, ']')
	} else {
		b = append(b, t.host...)
	}
	b = append(b, ':')
	return string(strconv.AppendUint(b, uint64(t.port), 10))
}

// len returns len(t.String()) without building it.
func (t Target) len() int {
	n := len(t.host) + 1 + len(strconv.Itoa(int(t.port)))
	if t.addr.Is6() {
		n += 2
	}
	return n
}

// parsePort parses 1..65535 in decimal without sign or leading zero.
func parsePort(s string) (uint16, error) {
	if s == "" || len(s) > 5 || s[0] == '0' {
		return 0, targetErr("port must be 1..65535 without leading zeros")
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, targetErr("port must be decimal digits")
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 65535 {
		return 0, targetErr("port above 65535")
	}
	return uint16(n), nil
}

// checkHost applies the host grammar of Target to a bare host. It returns
// the canonical host and, for an IP literal, its address; why is non-empty
// (and says what is wrong without quoting h) when h is refused.
func checkHost(h string) (canon string, a netip.Addr, why string) {
	if h == "" {
		return "", netip.Addr{}, "empty host"
	}
	if len(h) > maxNameLen+1 {
		return "", netip.Addr{}, "host longer than 253 bytes"
	}
	if strings.IndexByte(h, ':') >= 0 {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, "host has ':' but is not an IPv6 literal"
		}
		if a.Zone() != "" {
			return "", netip.Addr{}, "IPv6 literal with a zone"
		}
		a = a.Unmap()
		return a.String(), a, ""
	}
	if a, err := netip.ParseAddr(h); err == nil && a.Is4() && a.Zone() == "" {
		return a.String(), a, ""
	}
	return checkName(h)
}

// checkName applies the name rule of Target and returns the name in lower
// case without its trailing dot.
func checkName(h string) (string, netip.Addr, string) {
	bad := func(why string) (string, netip.Addr, string) { return "", netip.Addr{}, why }
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > maxNameLen {
		return bad("name must be 1..253 bytes")
	}
	last, lower := 0, true
	for i := 0; i <= len(h); i++ {
		if i == len(h) || h[i] == '.' {
			if n := i - last; n == 0 || n > maxLabelLen {
				return bad("name label must be 1..63 bytes")
			}
			if i < len(h) {
				last = i + 1
			}
			continue
		}
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c >= 'A' && c <= 'Z':
			lower = false
		default:
			return bad("name has a byte other than a letter, digit, '-', '_' or '.'")
		}
	}
	if !lower {
		h = strings.ToLower(h)
	}
	if numericLabel(h[last:]) {
		return bad("name has a numeric last label")
	}
	return h, netip.Addr{}, ""
}

// numericLabel reports whether the lower-case label l is a number in any
// base a permissive inet_aton accepts: decimal or octal digits, or "0x"
// followed by zero or more hex digits.
func numericLabel(l string) bool {
	digits := "0123456789"
	if strings.HasPrefix(l, "0x") {
		l, digits = l[2:], "0123456789abcdef"
		if l == "" {
			return true
		}
	}
	for i := 0; i < len(l); i++ {
		if strings.IndexByte(digits, l[i]) < 0 {
			return false
		}
	}
	return true
}

// targetErr returns an error wrapping ErrBadTarget; the detail must not
// contain the target.
func targetErr(format string, args ...any) error {
	return fmt.Errorf("target: %w: %s", ErrBadTarget, fmt.Sprintf(format, args...))
}
