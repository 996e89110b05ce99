package discovery

// Role is a service a node offers. Roles are short lowercase ASCII names
// ([a-z0-9-], 1..MaxRoleLen bytes) so later versions can add roles without
// breaking the encoding; unknown roles are carried but never selected.
type Role string

// The roles this version knows.
const (
	// RoleRelay forwards cells for circuits (a guard or middle hop).
	RoleRelay Role = "relay"
	// RoleExit opens TCP connections to the Internet (BEGIN service 0).
	RoleExit Role = "exit"
	// RoleMempool delivers transactions to the Bitcoin network (service 1).
	RoleMempool Role = "mempool"
	// RoleRendezvous joins circuits for hidden services (service 2).
	RoleRendezvous Role = "rendezvous"
	// RoleTorGateway forwards .onion streams into the Tor network through
	// the node's own tor (service 4).
	RoleTorGateway Role = "tor-gateway"
)

// validRole reports whether r is a syntactically valid role name.
func validRole(r Role) bool {
	if len(r) == 0 || len(r) > MaxRoleLen {
		return false
	}
	for i := 0; i < len(r); i++ {
		c := r[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// PortRange is an inclusive range of TCP ports, Lo <= Hi.
type PortRange struct {
	Lo, Hi uint16
}

// Contains reports whether port lies in the range.
func (r PortRange) Contains(port uint16) bool { return port >= r.Lo && port <= r.Hi }
