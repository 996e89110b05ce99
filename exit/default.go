package exit

// defaultRules is DefaultPolicy in rule syntax, with the registry each range
// comes from (IANA IPv4/IPv6 Special-Purpose Address Registries, RFC 6890).
// It is a function, not a package variable, so nothing can modify it.
func defaultRules() []string {
	return []string{
		// IPv4.
		"reject 0.0.0.0/8:*",       // "this network", incl. 0.0.0.0 (RFC 791, 1122)
		"reject 10.0.0.0/8:*",      // private (RFC 1918)
		"reject 100.64.0.0/10:*",   // shared address space, CGNAT (RFC 6598)
		"reject 127.0.0.0/8:*",     // loopback (RFC 1122)
		"reject 169.254.0.0/16:*",  // link-local (RFC 3927)
		"reject 172.16.0.0/12:*",   // private (RFC 1918)
		"reject 192.0.0.0/24:*",    // IETF protocol assignments (RFC 6890)
		"reject 192.0.2.0/24:*",    // TEST-NET-1 documentation (RFC 5737)
		"reject 192.88.99.0/24:*",  // deprecated 6to4 relay anycast (RFC 7526)
		"reject 192.168.0.0/16:*",  // private (RFC 1918)
		"reject 198.18.0.0/15:*",   // benchmarking (RFC 2544)
		"reject 198.51.100.0/24:*", // TEST-NET-2 documentation (RFC 5737)
		"reject 203.0.113.0/24:*",  // TEST-NET-3 documentation (RFC 5737)
		"reject 224.0.0.0/4:*",     // multicast (RFC 5771)
		"reject 240.0.0.0/4:*",     // reserved, incl. 255.255.255.255 broadcast (RFC 1112, 919)
		// IPv6. IPv4-mapped addresses (::ffff:0:0/96) never reach the rules:
		// Check judges them as the IPv4 address they carry.
		"reject [::]/128:*",          // unspecified (RFC 4291)
		"reject [::1]/128:*",         // loopback (RFC 4291)
		"reject [::]/96:*",           // deprecated IPv4-compatible (RFC 4291)
		"reject [::ffff:0:0:0]/96:*", // IPv4-translated, SIIT (RFC 2765)
		"reject [64:ff9b:1::]/48:*",  // local-use NAT64 (RFC 8215)
		"reject [100::]/64:*",        // discard-only (RFC 6666)
		"reject [2001::]/23:*",       // IETF protocol assignments, incl. Teredo, benchmarking, ORCHID (RFC 2928)
		"reject [2001:db8::]/32:*",   // documentation (RFC 3849)
		"reject [3fff::]/20:*",       // documentation (RFC 9637)
		"reject [5f00::]/16:*",       // SRv6 SIDs (RFC 9602)
		"reject [fc00::]/7:*",        // unique local (RFC 4193)
		"reject [fe80::]/10:*",       // link-local (RFC 4291)
		"reject [fec0::]/10:*",       // deprecated site-local (RFC 3879)
		"reject [ff00::]/8:*",        // multicast (RFC 4291)
		// Ports.
		"reject *:25", // SMTP: exits do not relay mail (spam)
		"accept *:*",
	}
}

// DefaultPolicy refuses every address that is not on the public internet —
// private, loopback, link-local, CGNAT, multicast, unspecified, broadcast,
// documentation, benchmarking and reserved ranges in IPv4 and IPv6 (and
// their IPv4-mapped, NAT64 and 6to4 forms, see Check) — and port 25, and
// accepts the rest. Each call returns a new Policy.
func DefaultPolicy() *Policy {
	lines := defaultRules()
	p := &Policy{rules: make([]Rule, len(lines))}
	for i, l := range lines {
		p.rules[i] = MustParseRule(l)
	}
	return p
}
