package cell

import (
	"net"
	"net/netip"
	"strconv"
)

// Service names what a stream asks of the last hop (§5 BEGIN).
type Service uint8

// Services (§5 BEGIN).
const (
	ServiceExit       Service = 0 // exit TCP
	ServiceMempool    Service = 1 // mempool delivery
	ServiceRendezvous Service = 2 // rendezvous
)

// Valid reports whether s is a known service.
func (s Service) Valid() bool { return s <= ServiceRendezvous }

// String returns a short name for s, or "Service(n)" if unknown.
func (s Service) String() string {
	switch s {
	case ServiceExit:
		return "exit"
	case ServiceMempool:
		return "mempool"
	case ServiceRendezvous:
		return "rendezvous"
	}
	return "Service(" + strconv.Itoa(int(s)) + ")"
}

// Begin is the body of a BEGIN relay message (§5):
//
//	service(1) | target_len(1) | target
type Begin struct {
	Service Service
	// Target is "host:port": 1..MaxTargetLen bytes of printable ASCII
	// without spaces, a non-empty host (an IPv6 literal without zone goes in
	// brackets, nothing else does) and a decimal port in 1..65535 without
	// leading zeros.
	Target string
}

// AppendBinary appends the encoded body to b.
func (m *Begin) AppendBinary(b []byte) ([]byte, error) {
	if !m.Service.Valid() {
		return b, wrap("begin", ErrBadService)
	}
	if !validTarget(m.Target) {
		return b, wrap("begin", ErrBadTarget)
	}
	b = append(b, byte(m.Service), byte(len(m.Target)))
	return append(b, m.Target...), nil
}

// UnmarshalBinary parses a BEGIN body; it rejects unknown services, bad
// targets and trailing bytes. On error m is unchanged.
func (m *Begin) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	svc := Service(r.u8())         // §5 BEGIN service
	target := r.bytes(int(r.u8())) // §5 BEGIN target_len | target
	if err := r.done("begin"); err != nil {
		return err
	}
	if !svc.Valid() {
		return wrap("begin", ErrBadService)
	}
	t := string(target)
	if !validTarget(t) {
		return wrap("begin", ErrBadTarget)
	}
	m.Service, m.Target = svc, t
	return nil
}

// validTarget checks a BEGIN target (see Begin.Target).
func validTarget(t string) bool {
	if !printable(t, MaxTargetLen) {
		return false
	}
	host, port, err := net.SplitHostPort(t)
	if err != nil || host == "" || port == "" || port[0] == '0' {
		return false
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return false
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p < 1 {
		return false
	}
	if t[0] == '[' {
		// Brackets only around an IPv6 literal without a zone.
		a, err := netip.ParseAddr(host)
		return err == nil && a.Is6() && a.Zone() == ""
	}
	return true
}
