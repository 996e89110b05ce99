package cell

import "strconv"

// Service names what a stream asks of the last hop (§5 BEGIN).
type Service uint8

// Services (§5 BEGIN).
const (
	ServiceExit       Service = 0 // exit TCP
	ServiceMempool    Service = 1 // mempool delivery
	ServiceRendezvous Service = 2 // rendezvous
	ServiceMint       Service = 3 // the hop's voucher mint (target MintTarget)
	// ServiceTorGateway forwards the stream into the Tor network through
	// the last hop's own tor: the target is a v3 ".onion" host and port,
	// and a refusal from tor comes back as END EndTorSocks.
	ServiceTorGateway Service = 4
)

// MintTarget is the one BEGIN target of ServiceMint (§5 BEGIN): the host
// "mint" and, as the port, the version of the mint protocol the stream
// speaks (VOUCHERS.md §3, /co-infuse/mint/1). The codec does not enforce
// it; a last hop answers any other target with END service-not-offered.
const MintTarget = "mint:1"

// Valid reports whether s is a known service.
func (s Service) Valid() bool { return s <= ServiceTorGateway }

// String returns a short name for s, or "Service(n)" if unknown.
func (s Service) String() string {
	switch s {
	case ServiceExit:
		return "exit"
	case ServiceMempool:
		return "mempool"
	case ServiceRendezvous:
		return "rendezvous"
	case ServiceMint:
		return "mint"
	case ServiceTorGateway:
		return "tor-gateway"
	}
	return "Service(" + strconv.Itoa(int(s)) + ")"
}

// Begin is the body of a BEGIN relay message (§5):
//
//	service(1) | target_len(1) | target
type Begin struct {
	// Service is what the stream asks of the last hop (§5 BEGIN service).
	Service Service
	// Target is where the stream goes (§5 BEGIN target_len | target). On the
	// wire it is Target.String(), the canonical form (see Target); a
	// decoder refuses any other spelling, so every BEGIN has one encoding.
	// The zero Target cannot be encoded.
	Target Target
}

// AppendBinary appends the encoded body to b.
func (m *Begin) AppendBinary(b []byte) ([]byte, error) {
	if !m.Service.Valid() {
		return b, wrap("begin", ErrBadService)
	}
	if m.Target.IsZero() {
		return b, wrap("begin", ErrBadTarget)
	}
	t := m.Target.String()
	b = append(b, byte(m.Service), byte(len(t)))
	return append(b, t...), nil
}

// UnmarshalBinary parses a BEGIN body; it rejects unknown services, targets
// that are not canonical Targets, and trailing bytes. On error m is
// unchanged.
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
	t, err := parseCanonicalTarget(string(target))
	if err != nil {
		return wrap("begin", err)
	}
	m.Service, m.Target = svc, t
	return nil
}
