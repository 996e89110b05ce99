package cell

import "strconv"

// EndReason says why a stream ended (§5.1).
type EndReason uint8

// END reasons (§5.1).
const (
	EndDone              EndReason = 0  // done
	EndMisc              EndReason = 1  // misc
	EndResolveFailed     EndReason = 2  // resolve failed
	EndConnRefused       EndReason = 3  // connection refused
	EndExitPolicy        EndReason = 4  // exit policy
	EndTimeout           EndReason = 5  // timeout
	EndUnreachable       EndReason = 6  // host/network unreachable
	EndDestroyed         EndReason = 7  // destroyed
	EndProtocol          EndReason = 8  // protocol
	EndServiceNotOffered EndReason = 9  // service not offered
	EndPayment           EndReason = 10 // payment
	EndResourceLimit     EndReason = 11 // resource limit
	// EndTorSocks: a Tor gateway's tor refused the stream; End.SocksCode
	// is the SOCKS5 reply byte tor sent (§5.1).
	EndTorSocks EndReason = 12
)

// Valid reports whether r is a known END reason.
func (r EndReason) Valid() bool { return r <= EndTorSocks }

// String returns a short name for r, or "EndReason(n)" if unknown.
func (r EndReason) String() string {
	switch r {
	case EndDone:
		return "done"
	case EndMisc:
		return "misc"
	case EndResolveFailed:
		return "resolve-failed"
	case EndConnRefused:
		return "conn-refused"
	case EndExitPolicy:
		return "exit-policy"
	case EndTimeout:
		return "timeout"
	case EndUnreachable:
		return "unreachable"
	case EndDestroyed:
		return "destroyed"
	case EndProtocol:
		return "protocol"
	case EndServiceNotOffered:
		return "service-not-offered"
	case EndPayment:
		return "payment"
	case EndResourceLimit:
		return "resource-limit"
	case EndTorSocks:
		return "tor-socks"
	}
	return "EndReason(" + strconv.Itoa(int(r)) + ")"
}

// ValidSocksCode reports whether c is a SOCKS5 failure reply an END
// tor-socks may carry (§5.1): RFC 1928's 0x01..0x08 or Tor's extended
// onion-service codes 0xF0..0xF7 (Tor socks-extensions.txt). 0x00 is
// success, not a failure, and other values are not defined.
func ValidSocksCode(c byte) bool {
	return (c >= 0x01 && c <= 0x08) || (c >= 0xF0 && c <= 0xF7)
}

// End is the body of an END relay message (§5, §5.1):
//
//	reason(1) [| socks_code(1) when reason = 12]
type End struct {
	// Reason is why the stream ended (§5.1 reason).
	Reason EndReason
	// SocksCode is the SOCKS5 reply byte a gateway's tor sent (§5.1
	// socks_code): present, and ValidSocksCode, exactly when Reason is
	// EndTorSocks; zero otherwise.
	SocksCode byte
}

// AppendBinary appends the encoded body to b; it refuses unknown reasons
// and a SocksCode that does not match the reason.
func (m *End) AppendBinary(b []byte) ([]byte, error) {
	if !m.Reason.Valid() {
		return b, wrap("end", ErrUnknownReason)
	}
	if m.Reason != EndTorSocks {
		if m.SocksCode != 0 {
			return b, wrap("end", ErrBadCode)
		}
		return append(b, byte(m.Reason)), nil
	}
	if !ValidSocksCode(m.SocksCode) {
		return b, wrap("end", ErrBadCode)
	}
	return append(b, byte(m.Reason), m.SocksCode), nil
}

// UnmarshalBinary parses an END body; it rejects unknown reasons, a
// missing or undefined socks_code after reason 12, and trailing bytes. On
// error m is unchanged.
func (m *End) UnmarshalBinary(data []byte) error {
	r := newReader(data)
	reason := EndReason(r.u8()) // §5.1 reason
	var code byte
	if reason == EndTorSocks {
		code = r.u8() // §5.1 socks_code
	}
	if err := r.done("end"); err != nil {
		return err
	}
	if !reason.Valid() {
		return wrap("end", ErrUnknownReason)
	}
	if reason == EndTorSocks && !ValidSocksCode(code) {
		return wrap("end", ErrBadCode)
	}
	m.Reason, m.SocksCode = reason, code
	return nil
}
