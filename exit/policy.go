package exit

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// maxRules caps a policy's length; policies come from operator config, and
// the cap keeps a runaway generated list from making every Check slow.
const maxRules = 1024

// Policy is an ordered list of rules. Check walks it top to bottom and the
// first rule that matches decides; an address no rule matches is refused, as
// if the list ended in "reject *:*". A Policy is immutable after
// construction and safe for concurrent use.
type Policy struct {
	rules []Rule // never modified after construction
}

// NewPolicyFromRules builds a policy from parsed rules, in order.
func NewPolicyFromRules(rules ...Rule) *Policy {
	return &Policy{rules: append([]Rule(nil), rules...)}
}

// ParsePolicy parses rules in order (the YAML form is a list of strings).
// Errors wrap ErrBadRule and name the bad line by index.
func ParsePolicy(lines []string) (*Policy, error) {
	if len(lines) > maxRules {
		return nil, fmt.Errorf("%w: more than %d rules", ErrBadRule, maxRules)
	}
	p := &Policy{rules: make([]Rule, 0, len(lines))}
	for i, l := range lines {
		r, err := ParseRule(l)
		if err != nil {
			return nil, fmt.Errorf("policy[%d]: %w", i, err)
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// NewPolicy is the policy an exit operator configures: the operator's rules
// first, then, if allowLoopback is set, "accept 127.0.0.0/8:*" and
// "accept [::1]/128:*", then DefaultPolicy. Operator rules can therefore
// narrow loopback access ("reject 127.0.0.1:9735") or open other ranges.
func NewPolicy(operatorRules []string, allowLoopback bool) (*Policy, error) {
	op, err := ParsePolicy(operatorRules)
	if err != nil {
		return nil, err
	}
	rules := op.rules
	if allowLoopback {
		rules = append(rules, MustParseRule("accept 127.0.0.0/8:*"), MustParseRule("accept [::1]/128:*"))
	}
	rules = append(rules, DefaultPolicy().rules...)
	if len(rules) > maxRules {
		return nil, fmt.Errorf("%w: more than %d rules", ErrBadRule, maxRules)
	}
	return &Policy{rules: rules}, nil
}

// Rules returns a copy of the policy's rules in order.
func (p *Policy) Rules() []Rule { return append([]Rule(nil), p.rules...) }

// Strings returns the rules in canonical string form, ready for YAML.
func (p *Policy) Strings() []string {
	out := make([]string, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.String()
	}
	return out
}

// String joins the rules with ", ".
func (p *Policy) String() string { return strings.Join(p.Strings(), ", ") }

// MarshalYAML writes the policy as a list of rule strings.
func (p *Policy) MarshalYAML() (any, error) { return p.Strings(), nil }

// UnmarshalYAML reads a list of rule strings (the yaml.v3 obsolete-unmarshaler
// form, so this package need not import yaml).
func (p *Policy) UnmarshalYAML(unmarshal func(any) error) error {
	var lines []string
	if err := unmarshal(&lines); err != nil {
		return err
	}
	q, err := ParsePolicy(lines)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}

// Check decides whether the exit may connect to ap. It returns nil to accept
// or a *PolicyError (which wraps circuit.ErrExitPolicy) naming the rule that
// refused. IPv4-mapped IPv6 addresses are judged as the IPv4 address they
// map; NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses must pass both
// as themselves and as the IPv4 address they embed. Scoped addresses and
// port 0 are always refused.
func (p *Policy) Check(ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return &PolicyError{Reason: "invalid address"}
	case a.Zone() != "":
		return &PolicyError{Reason: "scoped IPv6 address"}
	case ap.Port() == 0:
		return &PolicyError{Reason: "port 0"}
	}
	a = a.Unmap()
	if v4, ok := embeddedIPv4(a); ok {
		if err := p.decide(v4, ap.Port()); err != nil {
			return err
		}
	}
	return p.decide(a, ap.Port())
}

func (p *Policy) decide(a netip.Addr, port uint16) error {
	for i, r := range p.rules {
		if r.matchAddr(a) && r.matchPort(port) {
			if r.Accept {
				return nil
			}
			return &PolicyError{Rule: r, Index: i}
		}
	}
	return &PolicyError{Rule: MustParseRule("reject *:*"), Index: -1}
}

// AllowsAddr reports whether some port on a is accepted. It is exact: it
// tracks which ports are still undecided as it walks the rules. The exit's
// Resolve uses it, since a RESOLVE carries no port.
func (p *Policy) AllowsAddr(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	if v4, ok := embeddedIPv4(a); ok && !p.allowsAddr(v4) {
		return false
	}
	return p.allowsAddr(a)
}

func (p *Policy) allowsAddr(a netip.Addr) bool {
	open := []portRange{{1, 65535}} // ports no rule has decided yet
	for _, r := range p.rules {
		if !r.matchAddr(a) {
			continue
		}
		if r.Accept {
			for _, o := range open {
				if o.lo <= r.PortHi && r.PortLo <= o.hi {
					return true
				}
			}
		}
		open = subtract(open, portRange{r.PortLo, r.PortHi})
		if len(open) == 0 {
			return false
		}
	}
	return false
}

type portRange struct{ lo, hi uint16 }

func subtract(set []portRange, cut portRange) []portRange {
	out := set[:0:0]
	for _, s := range set {
		if cut.hi < s.lo || s.hi < cut.lo {
			out = append(out, s)
			continue
		}
		if s.lo < cut.lo {
			out = append(out, portRange{s.lo, cut.lo - 1})
		}
		if cut.hi < s.hi {
			out = append(out, portRange{cut.hi + 1, s.hi})
		}
	}
	return out
}

// AllowsPort is the cheap summary an exit advertises: it reports whether
// some public address may be reached on port. It walks the rules that cover
// port: a reject of a whole family closes that family, an accept of any
// range in a family still open answers true. It may answer true for an
// accept that earlier partial rejects shadow entirely; it never answers
// false for a port that Check would accept somewhere.
func (p *Policy) AllowsPort(port uint16) bool {
	if port == 0 {
		return false
	}
	closed4, closed6 := false, false
	for _, r := range p.rules {
		if !r.matchPort(port) {
			continue
		}
		if r.Accept {
			if (ruleTouches(r, IPv4) && !closed4) || (ruleTouches(r, IPv6) && !closed6) {
				return true
			}
			continue
		}
		closed4 = closed4 || r.allAddrs(IPv4)
		closed6 = closed6 || r.allAddrs(IPv6)
		if closed4 && closed6 {
			return false
		}
	}
	return false
}

func ruleTouches(r Rule, f Family) bool {
	if r.Prefix.IsValid() {
		return r.Prefix.Addr().Is4() == (f == IPv4)
	}
	return r.Family == AnyFamily || r.Family == f
}

// embeddedIPv4 returns the IPv4 address carried in a NAT64 (RFC 6052
// well-known prefix 64:ff9b::/96, last 32 bits) or 6to4 (RFC 3056,
// 2002::/16, bits 16..47) address.
func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case b == [16]byte{0x00, 0x64, 0xff, 0x9b, 12: b[12], b[13], b[14], b[15]}:
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case b[0] == 0x20 && b[1] == 0x02:
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// AllowedPorts is AllowsPort for every port at once, as sorted, disjoint,
// non-adjacent ranges: the exit-port summary an advert carries. The default
// policy gives [{1 24} {26 65535}].
func (p *Policy) AllowedPorts() []PortRange {
	// AllowsPort can only change where some rule's range starts or ends.
	cuts := map[uint32]struct{}{1: {}}
	for _, r := range p.rules {
		cuts[uint32(r.PortLo)] = struct{}{}
		cuts[uint32(r.PortHi)+1] = struct{}{}
	}
	starts := make([]uint32, 0, len(cuts))
	for c := range cuts {
		if c >= 1 && c <= 65535 {
			starts = append(starts, c)
		}
	}
	slices.Sort(starts)
	var out []PortRange
	for i, lo := range starts {
		hi := uint32(65535)
		if i+1 < len(starts) {
			hi = starts[i+1] - 1
		}
		if !p.AllowsPort(uint16(lo)) {
			continue
		}
		if n := len(out); n > 0 && uint32(out[n-1].Hi)+1 == lo {
			out[n-1].Hi = uint16(hi)
			continue
		}
		out = append(out, PortRange{uint16(lo), uint16(hi)})
	}
	return out
}
