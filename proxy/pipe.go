package proxy

import (
	"io"
	"net"
)

// pipe copies bytes both ways between a client and the stream Dial opened
// until both directions end. clientR is the client's buffered reader (it
// may already hold bytes the client sent after its request). When one side
// finishes sending, the other side's write half is closed if it can be
// (TCP-like conns); otherwise it is closed fully. A copy error closes both,
// which ends the other direction too. pipe runs both copies in goroutines
// it waits for.
func pipe(client net.Conn, clientR io.Reader, up net.Conn) {
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(up, clientR)
		closeWrite(up)
		done <- err
	}()
	go func() {
		_, err := io.Copy(client, up)
		closeWrite(client)
		done <- err
	}()
	for range 2 {
		if err := <-done; err != nil {
			_ = client.Close()
			_ = up.Close()
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}
