package devnet

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// testTorResolve sends Tor's SOCKS RESOLVE (command 0xF0, as btcd's
// connmgr.TorLookupIP and so lnd do) for "localhost" over the devnet: the
// exit resolves it (from its hosts file, never a DNS server off the
// machine) and the client answers 127.0.0.1 as ATYP 1, then closes.
func testTorResolve(t *testing.T, d *Devnet) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "tcp", d.Client.SOCKSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	req := []byte{5, 1, 0}
	req = append(req, 5, 0xF0, 0, 3, byte(len("localhost")))
	req = append(req, "localhost"...)
	req = append(req, 0, 0)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(io.LimitReader(c, 64))
	if err != nil {
		t.Fatalf("RESOLVE reply: %v (got %x)", err, got)
	}
	want := []byte{5, 0, 5, 0, 0, 1, 127, 0, 0, 1, 0, 0}
	if !bytes.Equal(got, want) {
		t.Fatalf("RESOLVE localhost: got %x, want %x (method 00, then success with 127.0.0.1, then close)", got, want)
	}
}
