package cell_test

import (
	"fmt"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

// A client sends "hello" on stream 1 to the second hop. The relay message
// fills that hop's payload region; the onion layers (package circuit) would
// then seal it into the first OnionLen(2) bytes of the body.
func Example() {
	pool := cell.NewPool(16)
	c := pool.Get()
	defer pool.Put(c) // zeroes the cell

	c.SetCircID(42)
	c.SetCommand(cell.CmdRelay)
	const depth = 2
	// Hop 2's region sits inside both layers: after hop 1's and hop 2's
	// cookie and kind.
	off := 2 * (cell.CookieLen + 1)
	region := c.Body()[off : off+cell.PayloadLen(depth)]
	if err := cell.EncodeRelay(region, cell.RelayData, 1, []byte("hello")); err != nil {
		fmt.Println(err)
		return
	}

	m, err := cell.DecodeRelay(region)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.CircID(), c.Command(), m.Cmd, m.StreamID, string(m.Data))
	fmt.Println(len(region), cell.MaxData(depth))
	// Output:
	// 42 RELAY DATA 1 hello
	// 4041 4036
}

func ExampleBegin() {
	// The front end parses the client's text once; any spelling it accepts
	// becomes the canonical form.
	t, err := cell.ParseTarget("Example.COM.:443")
	if err != nil {
		fmt.Println(err)
		return
	}
	b, err := (&cell.Begin{Service: cell.ServiceExit, Target: t}).AppendBinary(nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%x\n", b)

	var m cell.Begin
	fmt.Println(m.UnmarshalBinary(b), m.Service, m.Target)
	fmt.Println(m.UnmarshalBinary([]byte("\x00\x04h:80x")))
	fmt.Println(m.UnmarshalBinary([]byte("\x00\x04H:80")))
	// Output:
	// 000f6578616d706c652e636f6d3a343433
	// <nil> exit example.com:443
	// begin: cell: trailing bytes
	// begin: target: cell: bad target: not in canonical form
}
