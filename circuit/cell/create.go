package cell

import (
	"encoding/binary"
	"fmt"
)

// MaxCreateHandshake is the longest CREATE handshake: the body minus depth(1)
// and hs_len(2).
const MaxCreateHandshake = BodyLen - 3

// Create is the body of a CREATE cell (§2.1):
//
//	depth(1) | hs_len(2) | handshake(hs_len) | zero padding
type Create struct {
	// Depth is the position of the new hop, 1..MaxHops; the client sends 1.
	Depth uint8
	// Handshake is the first Noise message (§4), 1..MaxCreateHandshake bytes.
	Handshake []byte
}

// MarshalBody writes m into body, which must be exactly BodyLen bytes, and
// zero-fills the rest. Handshake may alias body (as it does after
// UnmarshalBody), so a cell can be re-encoded in place.
func (m *Create) MarshalBody(body []byte) error {
	if len(body) != BodyLen {
		return fmt.Errorf("create: body is %d bytes: %w", len(body), ErrBadLength)
	}
	if m.Depth < 1 || m.Depth > MaxHops {
		return fmt.Errorf("create: depth %d: %w", m.Depth, ErrBadDepth)
	}
	if err := checkHandshake("create", len(m.Handshake), MaxCreateHandshake); err != nil {
		return err
	}
	n := copy(body[3:], m.Handshake) // first: Handshake may alias body
	body[0] = m.Depth
	binary.BigEndian.PutUint16(body[1:3], uint16(n))
	clear(body[3+n:])
	return nil
}

// UnmarshalBody parses a CREATE body of exactly BodyLen bytes. m.Handshake
// aliases body: copy it before reusing the cell. It rejects a depth outside
// 1..MaxHops, an empty handshake, a length past the body and non-zero padding.
func (m *Create) UnmarshalBody(body []byte) error {
	if len(body) != BodyLen {
		return fmt.Errorf("create: body is %d bytes: %w", len(body), ErrBadLength)
	}
	depth := body[0] // §2.1 depth
	if depth < 1 || depth > MaxHops {
		return fmt.Errorf("create: depth %d: %w", depth, ErrBadDepth)
	}
	n := int(binary.BigEndian.Uint16(body[1:3])) // §2.1 hs_len
	if err := checkHandshake("create", n, MaxCreateHandshake); err != nil {
		return err
	}
	if !allZero(body[3+n:]) {
		return fmt.Errorf("create: %w", ErrBadPadding)
	}
	m.Depth = depth
	m.Handshake = body[3 : 3+n : 3+n]
	return nil
}

// checkHandshake checks a handshake length against 1..max.
func checkHandshake(what string, n, max int) error {
	if n == 0 {
		return fmt.Errorf("%s: empty handshake: %w", what, ErrShort)
	}
	if n > max {
		return fmt.Errorf("%s: handshake of %d bytes: %w", what, n, ErrTooLong)
	}
	return nil
}
