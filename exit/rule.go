package exit

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxRuleLen caps one rule string; the longest sensible rule,
// "reject [ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/128:65535-65535", is 64.
const maxRuleLen = 128

// Family restricts a wildcard rule to one address family.
type Family uint8

// Address families a wildcard rule may name: "*" (both), "*4", "*6".
const (
	AnyFamily Family = iota
	IPv4
	IPv6
)

// Rule is one line of a Policy. The zero Rule is "reject *:*" with an empty
// port range, which matches nothing; build rules with ParseRule.
//
// Syntax (one ASCII line, surrounding spaces ignored):
//
//	rule  = ("accept" | "reject") SP+ addr ":" ports
//	addr  = "*" | "*4" | "*6" | IPv4 ["/" bits] | "[" IPv6 "]" ["/" bits]
//	ports = "*" | port | port "-" port          ; 1..65535, low <= high
//
// A prefix must have no bits set beyond its length, and IPv4-mapped IPv6
// prefixes are refused: addresses are unmapped before matching, so write the
// IPv4 form instead.
type Rule struct {
	// Accept is true for "accept", false for "reject".
	Accept bool
	// Prefix is the address range; the zero Prefix means any address of
	// Family.
	Prefix netip.Prefix
	// Family applies only when Prefix is the zero value.
	Family Family
	// PortLo and PortHi bound the port range, inclusive.
	PortLo, PortHi uint16
}

// ParseRule parses one policy rule. Errors wrap ErrBadRule.
func ParseRule(s string) (Rule, error) {
	var r Rule
	if len(s) > maxRuleLen {
		return r, fmt.Errorf("%w: longer than %d bytes", ErrBadRule, maxRuleLen)
	}
	fields := strings.Fields(s)
	if len(fields) != 2 {
		return r, fmt.Errorf("%w: want \"accept|reject addr:ports\"", ErrBadRule)
	}
	switch fields[0] {
	case "accept":
		r.Accept = true
	case "reject":
	default:
		return r, fmt.Errorf("%w: action must be accept or reject", ErrBadRule)
	}
	spec := fields[1]
	colon := strings.LastIndexByte(spec, ':')
	if colon < 0 {
		return r, fmt.Errorf("%w: missing \":ports\"", ErrBadRule)
	}
	if err := r.parseAddr(spec[:colon]); err != nil {
		return Rule{}, err
	}
	lo, hi, err := parsePorts(spec[colon+1:])
	if err != nil {
		return Rule{}, err
	}
	r.PortLo, r.PortHi = lo, hi
	return r, nil
}

// MustParseRule is ParseRule for rules written in the source; it panics on a
// syntax error, which is a programming bug, never input.
func MustParseRule(s string) Rule {
	r, err := ParseRule(s)
	if err != nil {
		panic(err)
	}
	return r
}

func (r *Rule) parseAddr(s string) error {
	switch s {
	case "*":
		r.Family = AnyFamily
		return nil
	case "*4":
		r.Family = IPv4
		return nil
	case "*6":
		r.Family = IPv6
		return nil
	case "":
		return fmt.Errorf("%w: empty address", ErrBadRule)
	}
	addrPart, bitsPart, hasBits := strings.Cut(s, "/")
	var v6 bool
	if strings.HasPrefix(addrPart, "[") {
		if !strings.HasSuffix(addrPart, "]") || len(addrPart) < 3 {
			return fmt.Errorf("%w: unbalanced brackets", ErrBadRule)
		}
		addrPart, v6 = addrPart[1:len(addrPart)-1], true
	}
	a, err := netip.ParseAddr(addrPart)
	if err != nil {
		return fmt.Errorf("%w: address: %w", ErrBadRule, err)
	}
	switch {
	case a.Zone() != "":
		return fmt.Errorf("%w: scoped addresses are not allowed", ErrBadRule)
	case v6 != a.Is6():
		return fmt.Errorf("%w: IPv6 addresses go in brackets, IPv4 ones do not", ErrBadRule)
	case a.Is4In6():
		return fmt.Errorf("%w: IPv4-mapped prefix; write the IPv4 form", ErrBadRule)
	}
	bits := a.BitLen()
	if hasBits {
		bits, err = parseDecimal(bitsPart, a.BitLen())
		if err != nil {
			return fmt.Errorf("%w: prefix length: %w", ErrBadRule, err)
		}
	}
	p := netip.PrefixFrom(a, bits)
	if p.Masked() != p {
		return fmt.Errorf("%w: prefix has bits set beyond /%d", ErrBadRule, bits)
	}
	r.Prefix = p
	return nil
}

func parsePorts(s string) (lo, hi uint16, err error) {
	if s == "*" {
		return 1, 65535, nil
	}
	loS, hiS, isRange := strings.Cut(s, "-")
	l, err := parseDecimal(loS, 65535)
	if err != nil {
		return 0, 0, fmt.Errorf("%w: port: %w", ErrBadRule, err)
	}
	h := l
	if isRange {
		if h, err = parseDecimal(hiS, 65535); err != nil {
			return 0, 0, fmt.Errorf("%w: port: %w", ErrBadRule, err)
		}
	}
	if l == 0 || h < l {
		return 0, 0, fmt.Errorf("%w: port range must lie in 1..65535 with low <= high", ErrBadRule)
	}
	return uint16(l), uint16(h), nil
}

// parseDecimal accepts 1 to 5 ASCII digits without sign or leading zeros
// and a value no greater than limit.
func parseDecimal(s string, limit int) (int, error) {
	if s == "" || len(s) > 5 || (len(s) > 1 && s[0] == '0') {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n > limit {
		return 0, fmt.Errorf("number %q out of range", s)
	}
	return n, nil
}

// String returns the rule in canonical form; ParseRule(r.String()) == r.
func (r Rule) String() string {
	var b strings.Builder
	if r.Accept {
		b.WriteString("accept ")
	} else {
		b.WriteString("reject ")
	}
	switch {
	case r.Prefix.IsValid() && r.Prefix.Addr().Is6():
		b.WriteString("[" + r.Prefix.Addr().String() + "]/" + strconv.Itoa(r.Prefix.Bits()))
	case r.Prefix.IsValid():
		b.WriteString(r.Prefix.String())
	case r.Family == IPv4:
		b.WriteString("*4")
	case r.Family == IPv6:
		b.WriteString("*6")
	default:
		b.WriteString("*")
	}
	b.WriteByte(':')
	switch {
	case r.PortLo == 1 && r.PortHi == 65535:
		b.WriteString("*")
	case r.PortLo == r.PortHi:
		b.WriteString(strconv.Itoa(int(r.PortLo)))
	default:
		b.WriteString(strconv.Itoa(int(r.PortLo)) + "-" + strconv.Itoa(int(r.PortHi)))
	}
	return b.String()
}

// matchAddr reports whether a (already unmapped, unzoned) is in the rule's
// address range.
func (r Rule) matchAddr(a netip.Addr) bool {
	if r.Prefix.IsValid() {
		return r.Prefix.Contains(a)
	}
	switch r.Family {
	case IPv4:
		return a.Is4()
	case IPv6:
		return a.Is6()
	default:
		return true
	}
}

func (r Rule) matchPort(p uint16) bool { return r.PortLo <= p && p <= r.PortHi }

// allAddrs reports whether the rule covers every address of family f.
func (r Rule) allAddrs(f Family) bool {
	if r.Prefix.IsValid() {
		return r.Prefix.Bits() == 0 && ((f == IPv4) == r.Prefix.Addr().Is4())
	}
	return r.Family == AnyFamily || r.Family == f
}
