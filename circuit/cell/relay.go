package cell

import (
	"encoding/binary"
	"fmt"
	"strconv"
)

// RelayCmd is a relay-message command (§5).
type RelayCmd uint8

// Relay commands (§5).
const (
	RelayBegin     RelayCmd = 1  // stream ≠ 0; data: Begin
	RelayData      RelayCmd = 2  // stream ≠ 0; data: 1..MaxData stream bytes
	RelayEnd       RelayCmd = 3  // stream ≠ 0; data: End
	RelayConnected RelayCmd = 4  // stream ≠ 0; data: Connected
	RelaySendme    RelayCmd = 5  // any stream (0 = circuit window); data empty
	RelayExtend    RelayCmd = 6  // stream 0; data: Extend
	RelayExtended  RelayCmd = 7  // stream 0; data: Extended
	RelayDrop      RelayCmd = 8  // stream 0; data ignored (padding)
	RelayResolve   RelayCmd = 9  // stream ≠ 0; data: Resolve
	RelayResolved  RelayCmd = 10 // stream ≠ 0; data: Resolved
	RelayTopUp     RelayCmd = 11 // stream 0; data: TopUp
	RelayTopUpAck  RelayCmd = 12 // stream 0; data: TopUpAck
	RelayTeardown  RelayCmd = 13 // stream 0; data: Teardown
)

// Valid reports whether c is a known relay command.
func (c RelayCmd) Valid() bool { return c >= RelayBegin && c <= RelayTeardown }

// String returns the protocol name of c, or "RelayCmd(n)" if unknown.
func (c RelayCmd) String() string {
	switch c {
	case RelayBegin:
		return "BEGIN"
	case RelayData:
		return "DATA"
	case RelayEnd:
		return "END"
	case RelayConnected:
		return "CONNECTED"
	case RelaySendme:
		return "SENDME"
	case RelayExtend:
		return "EXTEND"
	case RelayExtended:
		return "EXTENDED"
	case RelayDrop:
		return "DROP"
	case RelayResolve:
		return "RESOLVE"
	case RelayResolved:
		return "RESOLVED"
	case RelayTopUp:
		return "TOPUP"
	case RelayTopUpAck:
		return "TOPUP_ACK"
	case RelayTeardown:
		return "TEARDOWN"
	}
	return "RelayCmd(" + strconv.Itoa(int(c)) + ")"
}

// StreamOK reports whether stream id s may carry command c (§5 table):
// SENDME takes any stream, EXTEND, EXTENDED, DROP, TOPUP, TOPUP_ACK and
// TEARDOWN only stream 0, and the others only a non-zero stream. It is false for unknown
// commands.
func (c RelayCmd) StreamOK(s uint16) bool {
	switch c {
	case RelaySendme:
		return true
	case RelayExtend, RelayExtended, RelayDrop, RelayTopUp, RelayTopUpAck, RelayTeardown:
		return s == 0
	case RelayBegin, RelayData, RelayEnd, RelayConnected, RelayResolve, RelayResolved:
		return s != 0
	}
	return false
}

// Relay is a decoded relay message (§5):
//
//	command(1) | stream_id(2) | length(2) | data(length) | zero padding
type Relay struct {
	Cmd      RelayCmd
	StreamID uint16
	// Data is the message body; after DecodeRelay it aliases the source.
	Data []byte
}

// checkRelay applies the per-command rules that do not need a body parser:
// the stream id, DATA being non-empty and SENDME being empty.
func checkRelay(cmd RelayCmd, stream uint16, n int) error {
	if !cmd.Valid() {
		return fmt.Errorf("relay: %v: %w", cmd, ErrUnknownCommand)
	}
	if !cmd.StreamOK(stream) {
		return fmt.Errorf("relay: %v on stream %d: %w", cmd, stream, ErrBadStream)
	}
	switch {
	case cmd == RelayData && n == 0:
		return fmt.Errorf("relay: empty DATA: %w", ErrShort)
	case cmd == RelaySendme && n != 0:
		return fmt.Errorf("relay: SENDME with %d data bytes: %w", n, ErrTrailing)
	}
	return nil
}

// EncodeRelay writes the header and data of a relay message into dst — the
// whole relay-message region, PayloadLen(depth) bytes for hop depth — and
// zero-fills the rest of dst. data may be dst[RelayHeaderLen:] itself (or
// overlap it), so a caller can build the body in place first. It fails if
// the message does not fit, cmd is unknown, stream is not allowed for cmd,
// DATA is empty or SENDME is not. It does not allocate on success.
func EncodeRelay(dst []byte, cmd RelayCmd, stream uint16, data []byte) error {
	if err := checkRelay(cmd, stream, len(data)); err != nil {
		return err
	}
	if len(data) > 0xffff || len(data) > len(dst)-RelayHeaderLen {
		return fmt.Errorf("relay: %d data bytes in a %d-byte region: %w", len(data), len(dst), ErrTooLong)
	}
	copy(dst[RelayHeaderLen:], data) // memmove: overlap is fine
	dst[0] = byte(cmd)
	binary.BigEndian.PutUint16(dst[1:3], stream)
	binary.BigEndian.PutUint16(dst[3:5], uint16(len(data)))
	clear(dst[RelayHeaderLen+len(data):])
	return nil
}

// DecodeRelay parses the relay-message region src (all of it: the padding is
// checked). The returned Data aliases src. It rejects an unknown command, a
// stream id not allowed for the command, a length past the end of src, an
// empty DATA, a non-empty SENDME and non-zero padding; it does not parse the
// body (see Begin, End, ...). It does not allocate on success.
func DecodeRelay(src []byte) (Relay, error) {
	if len(src) < RelayHeaderLen {
		return Relay{}, fmt.Errorf("relay: %d bytes: %w", len(src), ErrShort)
	}
	cmd := RelayCmd(src[0])                     // §5 command
	stream := binary.BigEndian.Uint16(src[1:3]) // §5 stream_id
	n := int(binary.BigEndian.Uint16(src[3:5])) // §5 length
	if n > len(src)-RelayHeaderLen {
		return Relay{}, fmt.Errorf("relay: length %d past %d-byte region: %w", n, len(src), ErrShort)
	}
	if err := checkRelay(cmd, stream, n); err != nil {
		return Relay{}, err
	}
	end := RelayHeaderLen + n
	if !allZero(src[end:]) {
		return Relay{}, fmt.Errorf("relay: %w", ErrBadPadding)
	}
	return Relay{Cmd: cmd, StreamID: stream, Data: src[RelayHeaderLen:end:end]}, nil
}
