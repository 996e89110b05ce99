package proxy

import (
	"bytes"
	"context"
	"net"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scriptConn is a net.Conn that reads a fixed script and records what is
// written, for running a whole control session in one goroutine.
type scriptConn struct {
	in  *bytes.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(b []byte) (int, error)       { return c.in.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzControlSession runs an arbitrary byte script as one authenticated
// (NULL) control session: no panic, and every reply line is well framed
// ("NNN" + '-', '+' or ' ', CRLF), data blocks ended by ".".
func FuzzControlSession(f *testing.F) {
	for _, s := range []string{
		"PROTOCOLINFO 1\r\nAUTHENTICATE\r\nGETINFO net/listeners/socks\r\nADD_ONION NEW:ED25519-V3 Port=8333,127.0.0.1:8334 PoWDefensesEnabled=1\r\n",
		"AUTHENTICATE\r\nADD_ONION NEW:BEST Port=1 Port=2\r\nADD_ONION NEW:BEST Port=3\r\nGETINFO onions/current onions/detached\r\nQUIT\r\n",
		"AUTHENTICATE\r\n+LOADCONF\r\nx\r\n.\r\nDEL_ONION 25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid\r\n",
		"AUTHCHALLENGE SAFECOOKIE 00\r\nAUTHENTICATE \"a\\\"b\"\r\n",
		"AUTHENTICATE\r\nADD_ONION ED25519-V3:cKjLrpfAV0rNDmfn6hMpcWUFsN82MqhVxwre9c3KjnlfkZxkJlyixy756WMKtNlVyMrhSxgaZfECky7rE1O1dA== Flags=Detach,DiscardPK Port=80\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, script []byte) {
		fo := newFakeOnions()
		s, err := NewControl(ControlConfig{AddOnion: fo.add, DelOnion: fo.del, NullAuth: true, MaxLine: 512,
			SOCKSListeners: func() []string { return []string{"127.0.0.1:9050", `[::1]:1"`} }})
		if err != nil {
			t.Fatal(err)
		}
		c := &scriptConn{in: bytes.NewReader(script)}
		s.serveConn(context.Background(), c)
		out := c.out.String()
		if out != "" && !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output does not end in CRLF: %q", out)
		}
		inData := false
		for _, l := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			if out == "" {
				break
			}
			if inData {
				inData = l != "."
				continue
			}
			if len(l) < 4 || strings.ContainsAny(l, "\r\n") {
				t.Fatalf("bad reply line %q", l)
			}
			if _, err := strconv.Atoi(l[:3]); err != nil || !strings.ContainsRune("-+ ", rune(l[3])) {
				t.Fatalf("bad reply line %q", l)
			}
			inData = l[3] == '+'
		}
		if inData {
			t.Fatal("data block not ended")
		}
	})
}

// FuzzParseAddOnion: ADD_ONION arguments that parse print back to a line
// that parses to the same request; quoted strings round-trip.
func FuzzParseAddOnion(f *testing.F) {
	for _, s := range []string{
		"NEW:ED25519-V3 Port=8333,127.0.0.1:8334 PoWDefensesEnabled=1",
		"NEW:BEST Flags=DiscardPK,Detach MaxStreams=5 Port=80 Port=443,[::1]:8443 ",
		"ED25519-V3:abc Port=9735,9735",
		"NEW:RSA1024 Port=80",
		`"quoted\101\n"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rest string) {
		if v, after, err := unquote(rest); err == nil {
			if v2, after2, err := unquote(quote(v)); err != nil || v2 != v || after2 != "" {
				t.Fatalf("quote(%q) does not round-trip (%q)", v, after)
			}
		}
		req, perr := parseAddOnion(rest)
		if perr != nil {
			if perr.code < 500 || perr.code > 599 || strings.ContainsAny(perr.msg, "\r\n") {
				t.Fatalf("error %d %q", perr.code, perr.msg)
			}
			return
		}
		line := req.KeySpec
		for _, p := range req.Ports {
			line += " Port=" + strconv.Itoa(int(p.Virtual)) + "," + p.Target
		}
		var flags []string
		if req.DiscardPK {
			flags = append(flags, "DiscardPK")
		}
		if req.Detach {
			flags = append(flags, "Detach")
		}
		if len(flags) > 0 {
			line += " Flags=" + strings.Join(flags, ",")
		}
		line += " MaxStreams=" + strconv.Itoa(req.MaxStreams)
		if req.PoW {
			line += " PoWDefensesEnabled=1"
		}
		again, perr := parseAddOnion(line)
		if perr != nil || !reflect.DeepEqual(again, req) {
			t.Fatalf("%q → %+v → %q → %+v, %v", rest, req, line, again, perr)
		}
		if strings.ContainsAny(req.KeySpec, " \r\n") {
			t.Fatalf("key spec %q", req.KeySpec)
		}
	})
}
