package cell

import (
	"encoding/binary"
	"fmt"
)

// MaxCreatedHandshake is the longest CREATED handshake: the body minus
// hs_len(2).
const MaxCreatedHandshake = BodyLen - 2

// Created is the body of a CREATED cell (§2.2):
//
//	hs_len(2) | handshake(hs_len) | zero padding
type Created struct {
	// Handshake is the second Noise message (§4), 1..MaxCreatedHandshake
	// bytes.
	Handshake []byte
}

// MarshalBody writes m into body, which must be exactly BodyLen bytes, and
// zero-fills the rest. Handshake may alias body (as it does after
// UnmarshalBody), so a cell can be re-encoded in place.
func (m *Created) MarshalBody(body []byte) error {
	if len(body) != BodyLen {
		return fmt.Errorf("created: body is %d bytes: %w", len(body), ErrBadLength)
	}
	if err := checkHandshake("created", len(m.Handshake), MaxCreatedHandshake); err != nil {
		return err
	}
	n := copy(body[2:], m.Handshake) // first: Handshake may alias body
	binary.BigEndian.PutUint16(body[0:2], uint16(n))
	clear(body[2+n:])
	return nil
}

// UnmarshalBody parses a CREATED body of exactly BodyLen bytes. m.Handshake
// aliases body: copy it before reusing the cell. It rejects an empty
// handshake, a length past the body and non-zero padding.
func (m *Created) UnmarshalBody(body []byte) error {
	if len(body) != BodyLen {
		return fmt.Errorf("created: body is %d bytes: %w", len(body), ErrBadLength)
	}
	n := int(binary.BigEndian.Uint16(body[0:2])) // §2.2 hs_len
	if err := checkHandshake("created", n, MaxCreatedHandshake); err != nil {
		return err
	}
	if !allZero(body[2+n:]) {
		return fmt.Errorf("created: %w", ErrBadPadding)
	}
	m.Handshake = body[2 : 2+n : 2+n]
	return nil
}
