package discovery

import (
	"github.com/ipfs/go-cid"
	mh "github.com/multiformats/go-multihash"
)

// Content keys (DISCOVERY.md §2). A node provides one key per role it offers
// and one per exit port class its policy touches; a client asks the DHT for
// the providers of one key. Keys are CIDv1 (raw) of a SHA-256 over a
// co-infuse name, so they never collide with IPFS content.
const keyPrefix = "co-infuse/v1/"

// roleKey is the content key of role r.
func roleKey(r Role) cid.Cid { return nameKey("role/" + string(r)) }

// portClassKey is the content key of an exit port class.
func portClassKey(class string) cid.Cid { return nameKey("exit-port/" + class) }

func nameKey(name string) cid.Cid {
	h, err := mh.Sum([]byte(keyPrefix+name), mh.SHA2_256, -1)
	if err != nil {
		// SHA2-256 is always registered; this cannot happen.
		return cid.Undef
	}
	return cid.NewCidV1(cid.Raw, h)
}

// portClass returns the exit port class of a port, or "" for a port in no
// class. Classes group the ports Bitcoin and Lightning software dials, so
// "exits that allow Bitcoin P2P" is one DHT query.
func portClass(port uint16) string {
	switch port {
	case 8333, 18333, 38333, 48333, 18444:
		return "bitcoin"
	case 9735:
		return "lightning"
	case 50001, 50002:
		return "electrum"
	case 80, 443:
		return "web"
	}
	return ""
}

// portClasses returns the classes in which ranges allow at least one port.
func portClasses(ranges []PortRange) []string {
	var out []string
	for _, c := range [...]struct {
		name  string
		ports []uint16
	}{
		{"bitcoin", []uint16{8333, 18333, 38333, 48333, 18444}},
		{"lightning", []uint16{9735}},
		{"electrum", []uint16{50001, 50002}},
		{"web", []uint16{80, 443}},
	} {
	ports:
		for _, p := range c.ports {
			for _, r := range ranges {
				if r.Contains(p) {
					out = append(out, c.name)
					break ports
				}
			}
		}
	}
	return out
}
