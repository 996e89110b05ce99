package payment

import "net"

// Wrap returns conn with every read and write that moved bytes followed by
// pc.Check, so a busy stream keeps its circuit's hops paid ahead of the
// cells it makes them carry, and every read first paced (Circuit.pace:
// held while a hop is nearly out of credit and its top-up is on the way). For a nil pc, or one with no paid hop, it
// returns conn itself. Closing the returned conn closes conn.
func (pc *Circuit) Wrap(conn net.Conn) net.Conn {
	if pc == nil || len(pc.hops) == 0 {
		return conn
	}
	return &checkedConn{Conn: conn, pc: pc}
}

// checkedConn checks its circuit's hops after each read and write.
type checkedConn struct {
	net.Conn
	pc *Circuit
}

func (c *checkedConn) Read(b []byte) (int, error) {
	c.pc.pace()
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.pc.Check()
	}
	return n, err
}

func (c *checkedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.pc.Check()
	}
	return n, err
}
