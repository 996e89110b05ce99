package payment

import "net"

// Wrap returns conn with its reads and writes counted on pc (Count). For a
// nil pc, or one with no paid hop, it returns conn itself. Closing the
// returned conn closes conn.
func (pc *Circuit) Wrap(conn net.Conn) net.Conn {
	if pc == nil || len(pc.hops) == 0 {
		return conn
	}
	return &countingConn{Conn: conn, pc: pc}
}

// countingConn reports a stream's bytes to its circuit's ledger.
type countingConn struct {
	net.Conn
	pc *Circuit
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.pc.Count(n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.pc.Count(n)
	return n, err
}
