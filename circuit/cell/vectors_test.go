package cell

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// vector is one entry of testdata/vectors.json; see the comment in that file.
type vector struct {
	Name string   `json:"name"`
	Type string   `json:"type"`
	Hex  string   `json:"hex"`
	Len  *int     `json:"len"`
	Fill [][3]any `json:"fill"`
	Set  [][2]any `json:"set"`
	Want *string  `json:"want"`
	Err  string   `json:"err"`
}

// sentinels maps the names used in testdata to the errors.
var sentinels = map[string]error{
	"ErrShort":          ErrShort,
	"ErrTooLong":        ErrTooLong,
	"ErrBadLength":      ErrBadLength,
	"ErrBadPadding":     ErrBadPadding,
	"ErrTrailing":       ErrTrailing,
	"ErrUnknownCommand": ErrUnknownCommand,
	"ErrBadStream":      ErrBadStream,
	"ErrBadDepth":       ErrBadDepth,
	"ErrUnknownReason":  ErrUnknownReason,
	"ErrBadService":     ErrBadService,
	"ErrBadTarget":      ErrBadTarget,
	"ErrBadHost":        ErrBadHost,
	"ErrBadAddr":        ErrBadAddr,
	"ErrTooMany":        ErrTooMany,
	"ErrBadCode":        ErrBadCode,
}

// loadVectors reads testdata/vectors.json and returns each vector with its
// bytes built.
func loadVectors(tb testing.TB) ([]vector, [][]byte) {
	tb.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var doc struct {
		Vectors []vector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		tb.Fatal(err)
	}
	bufs := make([][]byte, len(doc.Vectors))
	for i, v := range doc.Vectors {
		b, err := v.bytes()
		if err != nil {
			tb.Fatalf("vector %q: %v", v.Name, err)
		}
		bufs[i] = b
	}
	return doc.Vectors, bufs
}

// bytes builds the vector's input from hex, len, fill and set.
func (v *vector) bytes() ([]byte, error) {
	b, err := hex.DecodeString(v.Hex)
	if err != nil {
		return nil, err
	}
	if v.Len != nil {
		if *v.Len < len(b) {
			b = b[:*v.Len]
		} else {
			b = append(b, make([]byte, *v.Len-len(b))...)
		}
	}
	for _, f := range v.Fill {
		from, ok1 := f[0].(float64)
		to, ok2 := f[1].(float64)
		s, ok3 := f[2].(string)
		x, err := hex.DecodeString(s)
		if !ok1 || !ok2 || !ok3 || err != nil || len(x) != 1 || int(to) > len(b) || from > to {
			return nil, fmt.Errorf("bad fill %v", f)
		}
		for i := int(from); i < int(to); i++ {
			b[i] = x[0]
		}
	}
	for _, s := range v.Set {
		off, ok1 := s[0].(float64)
		h, ok2 := s[1].(string)
		x, err := hex.DecodeString(h)
		if !ok1 || !ok2 || err != nil || int(off)+len(x) > len(b) {
			return nil, fmt.Errorf("bad set %v", s)
		}
		copy(b[int(off):], x)
	}
	return b, nil
}

// decodeAs parses b with the parser named typ and returns the decoded value
// as text plus its re-encoding. The re-encoding of fixed-size inputs is
// written over a buffer of 0xee bytes, so it also checks zero-filling.
func decodeAs(typ string, b []byte) (desc string, again []byte, err error) {
	dirty := func(n int) []byte { return bytes.Repeat([]byte{0xee}, n) }
	switch typ {
	case "cell":
		if len(b) != Size {
			return "", nil, fmt.Errorf("cell of %d bytes: %w", len(b), ErrBadLength)
		}
		c := new(Cell)
		copy(c[:], b)
		out := new(Cell)
		copy(out[:], dirty(Size))
		out.SetCircID(c.CircID())
		out.SetCommand(c.Command())
		head := fmt.Sprintf("circ=%d cmd=%v", c.CircID(), c.Command())
		switch c.Command() {
		case CmdCreate, CmdCreated, CmdDestroy:
			d, body, err := decodeAs(c.Command().String(), c.Body())
			if err != nil {
				return "", nil, err
			}
			copy(out.Body(), body)
			return head + " " + d, out[:], nil
		default:
			copy(out.Body(), c.Body()) // PADDING and RELAY bodies are opaque here
			return head, out[:], nil
		}
	case "create", "CREATE":
		var m Create
		if err := m.UnmarshalBody(b); err != nil {
			return "", nil, err
		}
		out := dirty(BodyLen)
		return fmt.Sprintf("depth=%d hs=%x", m.Depth, m.Handshake), out, m.MarshalBody(out)
	case "created", "CREATED":
		var m Created
		if err := m.UnmarshalBody(b); err != nil {
			return "", nil, err
		}
		out := dirty(BodyLen)
		return fmt.Sprintf("hs=%x", m.Handshake), out, m.MarshalBody(out)
	case "destroy", "DESTROY":
		var m Destroy
		if err := m.UnmarshalBody(b); err != nil {
			return "", nil, err
		}
		out := dirty(BodyLen)
		return fmt.Sprintf("reason=%v", m.Reason), out, m.MarshalBody(out)
	case "relay":
		r, err := DecodeRelay(b)
		if err != nil {
			return "", nil, err
		}
		out := dirty(len(b))
		return fmt.Sprintf("cmd=%v stream=%d data=%x", r.Cmd, r.StreamID, r.Data), out, EncodeRelay(out, r.Cmd, r.StreamID, r.Data)
	case "begin":
		var m Begin
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("service=%v target=%q", m.Service, m.Target.String()), out, err
	case "connected":
		var m Connected
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("addr=%v", m.Addr), out, err
	case "offer":
		var m Offer
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("kind=%d batch=%x", m.Kind, m.Batch), out, err
	case "answer":
		var m Answer
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("cookie=%x paid=%v status=%d ack=%x", m.Cookie, m.Paid, m.Status, m.Ack), out, err
	case "teardown":
		var m Teardown
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("reason=%v", m.Reason), out, err
	case "end":
		var m End
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		if m.Reason == EndTorSocks {
			return fmt.Sprintf("reason=%v code=0x%02x", m.Reason, m.SocksCode), out, err
		}
		return fmt.Sprintf("reason=%v", m.Reason), out, err
	case "extend":
		var m Extend
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		addrs := make([]string, len(m.Addrs))
		for i, a := range m.Addrs {
			addrs[i] = hex.EncodeToString(a)
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("peer=%x addrs=[%s] key=%x hs=%x", m.Peer, strings.Join(addrs, " "), m.OnionKey, m.Handshake), out, err
	case "extended":
		var m Extended
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("hs=%x", m.Handshake), out, err
	case "resolve":
		var m Resolve
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("host=%q", m.Host), out, err
	case "resolved":
		var m Resolved
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("addr=%v ttl=%d", m.Addr, m.TTL), out, err
	case "topup":
		var m TopUp
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("payload=%x", m.Payload), out, err
	case "topup_ack":
		var m TopUpAck
		if err := m.UnmarshalBinary(b); err != nil {
			return "", nil, err
		}
		out, err := m.AppendBinary(nil)
		return fmt.Sprintf("status=%d payload=%x", m.Status, m.Payload), out, err
	}
	return "", nil, fmt.Errorf("unknown vector type %q", typ)
}

func TestVectors(t *testing.T) {
	t.Parallel()
	vs, bufs := loadVectors(t)
	seen := map[string]bool{}
	for i, v := range vs {
		if seen[v.Name] {
			t.Fatalf("duplicate vector name %q", v.Name)
		}
		seen[v.Name] = true
		in := bufs[i]
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			if (v.Want == nil) == (v.Err == "") {
				t.Fatal("vector needs exactly one of want and err")
			}
			orig := bytes.Clone(in)
			desc, again, err := decodeAs(v.Type, in)
			if !bytes.Equal(in, orig) {
				t.Fatal("parser modified its input")
			}
			if v.Err != "" {
				want, ok := sentinels[v.Err]
				if !ok {
					t.Fatalf("unknown sentinel %q", v.Err)
				}
				if !errors.Is(err, want) {
					t.Fatalf("got err %v, want %s", err, v.Err)
				}
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v does not match ErrMalformed", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("decode or re-encode: %v", err)
			}
			if desc != *v.Want {
				t.Fatalf("decoded\n got %s\nwant %s", desc, *v.Want)
			}
			if !bytes.Equal(again, in) {
				t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, in)
			}
		})
	}
	// Every parser has passing and failing vectors.
	for _, typ := range []string{"cell", "create", "created", "destroy", "relay", "begin", "connected", "end", "extend", "extended", "resolve", "resolved", "topup", "topup_ack", "teardown"} {
		var ok, bad bool
		for _, v := range vs {
			if v.Type == typ {
				ok = ok || v.Want != nil
				bad = bad || v.Err != ""
			}
		}
		if !ok || !bad {
			t.Errorf("type %s: passing vectors %v, failing vectors %v; want both", typ, ok, bad)
		}
	}
}
