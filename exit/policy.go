package exit

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/co-infuse/co-infuse/internal/netclass"
)

// maxRules caps a policy's length; policies come from operator config, and
// the cap keeps a runaway generated list from making every Check slow.
const maxRules = 1024

// maxPrivateRanges caps the opened non-public ranges; they come from
// operator config and are checked on every refusal.
const maxPrivateRanges = 64

// Policy is an ordered list of rules behind a fixed first step, as Tor's
// ExitPolicyRejectPrivate. Check first refuses every address that is not on
// the public internet (internal/netclass: private, loopback, link-local,
// CGNAT, multicast, unspecified, broadcast, documentation, benchmarking,
// reserved, and NAT64 or 6to4 addresses embedding any of those), unless it
// lies in a range the policy opens (NewPolicy); no rule can accept such an
// address. Then it walks the rules top to bottom and the first rule that
// matches decides; an address no rule matches is refused, as if the list
// ended in "reject *:*". A Policy is immutable after construction and safe
// for concurrent use.
type Policy struct {
	rules []Rule         // never modified after construction
	open  []netip.Prefix // non-public ranges opened; never modified after construction
}

// NewPolicyFromRules builds a policy from parsed rules, in order; it opens
// no non-public range (see NewPolicy).
func NewPolicyFromRules(rules ...Rule) *Policy {
	return &Policy{rules: append([]Rule(nil), rules...)}
}

// ParsePolicy parses rules in order (the YAML form is a list of strings).
// Errors wrap ErrBadRule and name the bad line by index. The policy opens
// no non-public range (see NewPolicy).
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

// NewPolicy is the policy an exit operator configures: operatorRules
// (exit.policy), then DefaultPolicy's rules, behind the refusal of every
// non-public address. allowPrivate (exit.allow_private_ranges; see
// ParsePrivateRanges) opens non-public ranges: each must be a masked prefix
// inside one range of internal/netclass, else the error wraps
// ErrBadPrivateRange. An address in an opened range is then judged by the
// rules like any public one, so operator rules can narrow it ("reject
// 127.0.0.1:9735"). Only the address itself is opened (and its IPv4-mapped
// form, which the kernel dials as the same address), never a NAT64 or 6to4
// address embedding it, which would go through a translator.
//
// An operator accept rule whose whole range is non-public and not opened
// could never match; it is refused with an error wrapping ErrBadRule that
// names the setting to use, so that a config written when rules came before
// the private ranges ("accept 10.0.0.0/8:8333") fails loudly instead of
// silently losing its meaning.
func NewPolicy(operatorRules []string, allowPrivate []netip.Prefix) (*Policy, error) {
	if len(allowPrivate) > maxPrivateRanges {
		return nil, fmt.Errorf("%w: more than %d ranges", ErrBadPrivateRange, maxPrivateRanges)
	}
	for i, pr := range allowPrivate {
		if err := checkPrivateRange(pr); err != nil {
			return nil, fmt.Errorf("allow_private_ranges[%d]: %w", i, err)
		}
	}
	op, err := ParsePolicy(operatorRules)
	if err != nil {
		return nil, err
	}
	p := &Policy{rules: op.rules, open: slices.Clone(allowPrivate)}
	for i, r := range p.rules {
		if r.Accept && p.dead(r) {
			rg, _ := netclass.Inside(r.Prefix)
			return nil, fmt.Errorf("policy[%d]: %w: %q accepts only %s addresses (%s), which are refused before any rule; open them with exit.allow_private_ranges",
				i, ErrBadRule, r.String(), rg.Class, rg.Prefix)
		}
	}
	p.rules = append(p.rules, DefaultPolicy().rules...)
	if len(p.rules) > maxRules {
		return nil, fmt.Errorf("%w: more than %d rules", ErrBadRule, maxRules)
	}
	return p, nil
}

// LoopbackRanges are 127.0.0.0/8 and ::1/128, what the "loopback" entry of
// ParsePrivateRanges opens (devnet does, to reach its demo server).
func LoopbackRanges() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// ParsePrivateRanges parses the exit.allow_private_ranges setting. Each
// entry is the word "loopback" (LoopbackRanges), a prefix in netip form
// ("10.8.0.0/16", "fd00::/8"), or a single address (its /32 or /128). Each
// must lie inside one non-public range of internal/netclass: public
// addresses are opened by rules, and a prefix such as 0.0.0.0/0 is refused
// rather than taken to open every private range at once. Errors wrap
// ErrBadPrivateRange and name the entry by index.
func ParsePrivateRanges(list []string) ([]netip.Prefix, error) {
	if len(list) > maxPrivateRanges {
		return nil, fmt.Errorf("%w: more than %d ranges", ErrBadPrivateRange, maxPrivateRanges)
	}
	var out []netip.Prefix
	for i, s := range list {
		if s == "loopback" {
			out = append(out, LoopbackRanges()...)
			continue
		}
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("allow_private_ranges[%d]: %w: not \"loopback\", a prefix or an address", i, ErrBadPrivateRange)
			}
			pr = netip.PrefixFrom(a, a.BitLen())
		}
		if err := checkPrivateRange(pr); err != nil {
			return nil, fmt.Errorf("allow_private_ranges[%d]: %w", i, err)
		}
		out = append(out, pr)
	}
	return out, nil
}

// checkPrivateRange vets one opened range; errors wrap ErrBadPrivateRange.
func checkPrivateRange(pr netip.Prefix) error {
	switch {
	case !pr.IsValid():
		return fmt.Errorf("%w: invalid prefix", ErrBadPrivateRange)
	case pr.Addr().Zone() != "":
		return fmt.Errorf("%w: scoped addresses are not allowed", ErrBadPrivateRange)
	case pr.Addr().Is4In6():
		return fmt.Errorf("%w: IPv4-mapped prefix; write the IPv4 form", ErrBadPrivateRange)
	case pr.Masked() != pr:
		return fmt.Errorf("%w: prefix has bits set beyond /%d", ErrBadPrivateRange, pr.Bits())
	}
	if _, ok := netclass.Inside(pr); !ok {
		return fmt.Errorf("%w: %s is not inside one non-public range (public addresses are opened by exit.policy rules)", ErrBadPrivateRange, pr)
	}
	return nil
}

// OpenPrivate returns a copy of the non-public ranges the policy opens.
func (p *Policy) OpenPrivate() []netip.Prefix { return slices.Clone(p.open) }

// opened reports whether a (unmapped, unzoned) lies in an opened range.
func (p *Policy) opened(a netip.Addr) bool {
	for _, pr := range p.open {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// dead reports whether r covers only non-public addresses that no opened
// range reaches, so it can never match an address Check lets through.
func (p *Policy) dead(r Rule) bool {
	if !r.Prefix.IsValid() {
		return false
	}
	if _, ok := netclass.Inside(r.Prefix); !ok {
		return false
	}
	for _, pr := range p.open {
		if pr.Overlaps(r.Prefix) {
			return false
		}
	}
	return true
}

// refusedFirst returns the refusal of a (unmapped) when it is not public
// and no opened range contains it, else nil. Only a direct address can be
// opened: a NAT64 or 6to4 address embedding a non-public one never is.
func (p *Policy) refusedFirst(a netip.Addr) error {
	v := netclass.Classify(a)
	switch {
	case v.Public():
		return nil
	case v.Wrap == netclass.Direct && p.opened(a):
		return nil
	case v.Class == netclass.Invalid:
		return &PolicyError{Reason: "invalid address", NotPublic: true}
	case v.Wrap != netclass.Direct:
		return &PolicyError{Reason: fmt.Sprintf("%s address embedding a non-public IPv4 address (%s, %s), refused before any rule", v.Wrap, v.Class, v.Range), NotPublic: true}
	default:
		return &PolicyError{Reason: fmt.Sprintf("%s address (%s), refused before any rule", v.Class, v.Range), NotPublic: true}
	}
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
// refused, or with NotPublic set when the address was refused before any
// rule. IPv4-mapped IPv6 addresses are judged as the IPv4 address they map;
// NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses are refused first
// when the IPv4 address they embed is not public, and otherwise must pass
// the rules both as themselves and as that IPv4 address. Scoped addresses
// and port 0 are always refused.
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
	if err := p.refusedFirst(a); err != nil {
		return err
	}
	if v4, w := netclass.EmbeddedIPv4(a); w != netclass.Direct {
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
// refuses what Check refuses before any rule, then tracks which ports are
// still undecided as it walks the rules. The exit's Resolve uses it, since a
// RESOLVE carries no port.
func (p *Policy) AllowsAddr(a netip.Addr) bool {
	if !a.IsValid() || a.Zone() != "" {
		return false
	}
	a = a.Unmap()
	if p.refusedFirst(a) != nil {
		return false
	}
	if v4, w := netclass.EmbeddedIPv4(a); w != netclass.Direct && !p.allowsAddr(v4) {
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
// some address may be reached on port. It walks the rules that cover port,
// skipping accepts of only non-public ranges the policy does not open: a
// reject of a whole family closes that family, an accept of any range in a
// family still open answers true. It may answer true for an accept that
// earlier partial rejects shadow entirely; it never answers false for a
// port that Check would accept somewhere.
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
			if p.dead(r) {
				continue
			}
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
