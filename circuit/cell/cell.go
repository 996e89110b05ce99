package cell

import (
	"encoding/binary"
	"strconv"
)

// CircID names a circuit on one link stream (§1.1, §2). 0 is reserved for
// PADDING cells.
type CircID uint32

// Command is a link cell command (§2).
type Command uint8

// Link cell commands (§2).
const (
	CmdPadding Command = 0 // body ignored; link keep-alive
	CmdCreate  Command = 1 // body: Create (§2.1)
	CmdCreated Command = 2 // body: Created (§2.2)
	CmdRelay   Command = 3 // body: onion (§3)
	CmdDestroy Command = 4 // body: Destroy (§2.3)
)

// Valid reports whether c is a known link command. A peer that sends an
// unknown one loses the link (§1.1).
func (c Command) Valid() bool { return c <= CmdDestroy }

// String returns the protocol name of c, or "Command(n)" if unknown.
func (c Command) String() string {
	switch c {
	case CmdPadding:
		return "PADDING"
	case CmdCreate:
		return "CREATE"
	case CmdCreated:
		return "CREATED"
	case CmdRelay:
		return "RELAY"
	case CmdDestroy:
		return "DESTROY"
	}
	return "Command(" + strconv.Itoa(int(c)) + ")"
}

// Cell is one link cell: circ_id(4) | command(1) | body(BodyLen) (§2). It is
// an array so that a *Cell can be pooled (see Pool) and filled in place.
type Cell [Size]byte

// CircID returns the circuit id in the header.
func (c *Cell) CircID() CircID { return CircID(binary.BigEndian.Uint32(c[0:4])) }

// SetCircID writes id into the header.
func (c *Cell) SetCircID(id CircID) { binary.BigEndian.PutUint32(c[0:4], uint32(id)) }

// Command returns the command byte in the header. It may be unknown; check
// Valid.
func (c *Cell) Command() Command { return Command(c[4]) }

// SetCommand writes cmd into the header.
func (c *Cell) SetCommand(cmd Command) { c[4] = byte(cmd) }

// Body returns the BodyLen bytes after the header. The slice aliases c.
func (c *Cell) Body() []byte { return c[HeaderLen:] }

// Reset zeroes the whole cell.
func (c *Cell) Reset() { *c = Cell{} }
