package exit

// defaultRules is DefaultPolicy's rules. Non-public addresses never reach
// them: Check refuses those first (see Policy), from the one table in
// internal/netclass. It is a function, not a package variable, so nothing
// can modify it.
func defaultRules() []string {
	return []string{
		"reject *:25", // SMTP: exits do not relay mail (spam)
		"accept *:*",
	}
}

// DefaultPolicy refuses every address that is not on the public internet
// before any rule — private, loopback, link-local, CGNAT, multicast,
// unspecified, broadcast, documentation, benchmarking and reserved ranges in
// IPv4 and IPv6, and their IPv4-mapped, NAT64 and 6to4 forms (see
// PrivateRanges and Check) — then refuses port 25 and accepts the rest.
// Each call returns a new Policy.
func DefaultPolicy() *Policy {
	lines := defaultRules()
	p := &Policy{rules: make([]Rule, len(lines))}
	for i, l := range lines {
		p.rules[i] = MustParseRule(l)
	}
	return p
}
