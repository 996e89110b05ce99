package cell

import (
	"bytes"
	"encoding"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// relayBody is what every relay-message body type implements.
type relayBody interface {
	encoding.BinaryAppender
	encoding.BinaryUnmarshaler
}

var (
	_ relayBody = (*Begin)(nil)
	_ relayBody = (*Connected)(nil)
	_ relayBody = (*End)(nil)
	_ relayBody = (*Extend)(nil)
	_ relayBody = (*Extended)(nil)
	_ relayBody = (*Resolve)(nil)
	_ relayBody = (*Resolved)(nil)
	_ relayBody = (*TopUp)(nil)
	_ relayBody = (*TopUpAck)(nil)
)

func TestRelayBodiesRoundTrip(t *testing.T) {
	t.Parallel()
	key := [OnionKeyLen]byte{1, 2, 3, 31: 0xff}
	eightAddrs := make([][]byte, MaxExtendAddrs)
	for i := range eightAddrs {
		eightAddrs[i] = bytes.Repeat([]byte{byte(i + 1)}, MaxAddrLen)
	}
	tests := []struct {
		name string
		in   relayBody
		out  func() relayBody
	}{
		{"begin exit", &Begin{ServiceExit, mustTarget("example.com:443")}, func() relayBody { return new(Begin) }},
		{"begin ipv6", &Begin{ServiceMempool, mustTarget("[2001:db8::1]:8333")}, func() relayBody { return new(Begin) }},
		{"begin max target", &Begin{ServiceRendezvous, mustTarget(maxName(249) + ":65535")}, func() relayBody { return new(Begin) }},
		{"connected none", &Connected{}, func() relayBody { return new(Connected) }},
		{"connected v4", &Connected{netip.MustParseAddr("203.0.113.9")}, func() relayBody { return new(Connected) }},
		{"connected v6", &Connected{netip.MustParseAddr("2001:db8::7")}, func() relayBody { return new(Connected) }},
		{"connected v4-mapped", &Connected{netip.MustParseAddr("::ffff:1.2.3.4")}, func() relayBody { return new(Connected) }},
		{"end", &End{Reason: EndExitPolicy}, func() relayBody { return new(End) }},
		{"end tor-socks", &End{Reason: EndTorSocks, SocksCode: 0xF6}, func() relayBody { return new(End) }},
		{"extend", &Extend{Peer: []byte{0x12, 0x20, 9}, Addrs: [][]byte{{4, 127, 0, 0, 1}}, OnionKey: key, Handshake: make([]byte, 48)}, func() relayBody { return new(Extend) }},
		{"extend max addrs", &Extend{Peer: bytes.Repeat([]byte{7}, MaxPeerIDLen), Addrs: eightAddrs, OnionKey: key, Handshake: []byte{1}}, func() relayBody { return new(Extend) }},
		{"extended", &Extended{Handshake: make([]byte, 64)}, func() relayBody { return new(Extended) }},
		{"extended max", &Extended{Handshake: make([]byte, MaxRelayData-2)}, func() relayBody { return new(Extended) }},
		{"resolve", &Resolve{"example.org"}, func() relayBody { return new(Resolve) }},
		{"resolved", &Resolved{netip.MustParseAddr("198.51.100.2"), 60}, func() relayBody { return new(Resolved) }},
		{"topup", &TopUp{[]byte("voucher")}, func() relayBody { return new(TopUp) }},
		{"topup max", &TopUp{make([]byte, MaxRelayData)}, func() relayBody { return new(TopUp) }},
		{"topup ack", &TopUpAck{2, []byte{9, 9}}, func() relayBody { return new(TopUpAck) }},
		{"topup ack max", &TopUpAck{0, make([]byte, MaxRelayData-1)}, func() relayBody { return new(TopUpAck) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("prefix")
			b, err := tt.in.AppendBinary(bytes.Clone(prefix))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(b, prefix) {
				t.Fatal("AppendBinary lost the prefix")
			}
			if len(b)-len(prefix) > MaxRelayData {
				t.Fatalf("body of %d bytes does not fit a relay message", len(b)-len(prefix))
			}
			out := tt.out()
			if err := out.UnmarshalBinary(b[len(prefix):]); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(norm(out), norm(tt.in)) {
				t.Fatalf("got %+v, want %+v", out, tt.in)
			}
			// It must also travel in a relay message to the deepest hop,
			// unless it is one of the maximum-size cases.
			if len(b)-len(prefix) <= MaxData(MaxHops) {
				region := make([]byte, PayloadLen(MaxHops))
				if err := EncodeRelay(region, RelayDrop, 0, b[len(prefix):]); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// norm maps nil and empty byte slices together so DeepEqual compares values.
func norm(m relayBody) relayBody {
	switch v := m.(type) {
	case *TopUp:
		if len(v.Payload) == 0 {
			return &TopUp{}
		}
	case *TopUpAck:
		if len(v.Payload) == 0 {
			return &TopUpAck{Status: v.Status}
		}
	case *Extend:
		if len(v.Addrs) == 0 {
			c := *v
			c.Addrs = nil
			return &c
		}
	}
	return m
}

func TestRelayBodiesEncodeErrors(t *testing.T) {
	t.Parallel()
	key := [OnionKeyLen]byte{}
	nine := make([][]byte, MaxExtendAddrs+1)
	for i := range nine {
		nine[i] = []byte{1}
	}
	tests := []struct {
		name string
		in   encoding.BinaryAppender
		err  error
	}{
		{"begin bad service", &Begin{Service(5), mustTarget("h:1")}, ErrBadService},
		{"begin zero target", &Begin{ServiceExit, Target{}}, ErrBadTarget},
		{"connected zone", &Connected{netip.MustParseAddr("fe80::1%eth0")}, ErrBadAddr},
		{"end unknown", &End{Reason: EndReason(13)}, ErrUnknownReason},
		{"end tor-socks no code", &End{Reason: EndTorSocks}, ErrBadCode},
		{"end tor-socks code 0x09", &End{Reason: EndTorSocks, SocksCode: 0x09}, ErrBadCode},
		{"end code with another reason", &End{Reason: EndExitPolicy, SocksCode: 0xF0}, ErrBadCode},
		{"extend no peer", &Extend{OnionKey: key, Handshake: []byte{1}}, ErrShort},
		{"extend long peer", &Extend{Peer: make([]byte, MaxPeerIDLen+1), OnionKey: key, Handshake: []byte{1}}, ErrTooLong},
		{"extend nine addrs", &Extend{Peer: []byte{1}, Addrs: nine, Handshake: []byte{1}}, ErrTooMany},
		{"extend empty addr", &Extend{Peer: []byte{1}, Addrs: [][]byte{{}}, Handshake: []byte{1}}, ErrShort},
		{"extend long addr", &Extend{Peer: []byte{1}, Addrs: [][]byte{make([]byte, MaxAddrLen+1)}, Handshake: []byte{1}}, ErrTooLong},
		{"extend no handshake", &Extend{Peer: []byte{1}}, ErrShort},
		{"extend too big", &Extend{Peer: []byte{1}, Handshake: make([]byte, MaxRelayData)}, ErrTooLong},
		{"extended empty", &Extended{}, ErrShort},
		{"extended too big", &Extended{make([]byte, MaxRelayData-1)}, ErrTooLong},
		{"resolve empty", &Resolve{}, ErrBadHost},
		{"resolve space", &Resolve{"a b"}, ErrBadHost},
		{"resolve too long", &Resolve{strings.Repeat("a", MaxHostLen+1)}, ErrBadHost},
		{"resolved none", &Resolved{}, ErrBadAddr},
		{"resolved zone", &Resolved{Addr: netip.MustParseAddr("fe80::1%1")}, ErrBadAddr},
		{"topup too big", &TopUp{make([]byte, MaxRelayData+1)}, ErrTooLong},
		{"topup ack too big", &TopUpAck{0, make([]byte, MaxRelayData)}, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b, err := tt.in.AppendBinary([]byte{0xaa})
			if !errors.Is(err, tt.err) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if !bytes.Equal(b, []byte{0xaa}) {
				t.Fatalf("failed AppendBinary changed the buffer to %x", b)
			}
		})
	}
}

func TestUnmarshalLeavesValueOnError(t *testing.T) {
	t.Parallel()
	begin := Begin{ServiceMempool, mustTarget("m:1")}
	if err := begin.UnmarshalBinary([]byte{0, 3, 'x', ':', '0'}); err == nil {
		t.Fatal("bad target accepted")
	}
	if begin != (Begin{ServiceMempool, mustTarget("m:1")}) {
		t.Fatalf("Begin changed to %+v", begin)
	}
	ext := Extend{Peer: []byte{5}, Handshake: []byte{6}}
	if err := ext.UnmarshalBinary([]byte{1, 9, 0}); err == nil {
		t.Fatal("short EXTEND accepted")
	}
	if !bytes.Equal(ext.Peer, []byte{5}) || !bytes.Equal(ext.Handshake, []byte{6}) {
		t.Fatalf("Extend changed to %+v", ext)
	}
	cr := Create{Depth: 2, Handshake: []byte{1}}
	if err := cr.UnmarshalBody(make([]byte, BodyLen)); err == nil {
		t.Fatal("zero CREATE accepted")
	}
	if cr.Depth != 2 {
		t.Fatalf("Create changed to %+v", cr)
	}
}

func TestCellBodiesMarshal(t *testing.T) {
	t.Parallel()
	hs := bytes.Repeat([]byte{0x42}, 48)
	tests := []struct {
		name string
		m    interface{ MarshalBody([]byte) error }
		n    int
		want []byte // prefix; the rest must be zero
		err  error
	}{
		{"create", &Create{Depth: 2, Handshake: hs}, BodyLen, append([]byte{2, 0, 48}, hs...), nil},
		{"create max", &Create{Depth: 1, Handshake: make([]byte, MaxCreateHandshake)}, BodyLen, []byte{1, 0x0f, 0xf8}, nil},
		{"create too long", &Create{Depth: 1, Handshake: make([]byte, MaxCreateHandshake+1)}, BodyLen, nil, ErrTooLong},
		{"create depth 0", &Create{Depth: 0, Handshake: hs}, BodyLen, nil, ErrBadDepth},
		{"create depth 9", &Create{Depth: MaxHops + 1, Handshake: hs}, BodyLen, nil, ErrBadDepth},
		{"create empty", &Create{Depth: 1}, BodyLen, nil, ErrShort},
		{"create short body", &Create{Depth: 1, Handshake: hs}, BodyLen - 1, nil, ErrBadLength},
		{"created", &Created{Handshake: hs}, BodyLen, append([]byte{0, 48}, hs...), nil},
		{"created max", &Created{Handshake: make([]byte, MaxCreatedHandshake)}, BodyLen, []byte{0x0f, 0xf9}, nil},
		{"created too long", &Created{Handshake: make([]byte, MaxCreatedHandshake+1)}, BodyLen, nil, ErrTooLong},
		{"created empty", &Created{}, BodyLen, nil, ErrShort},
		{"created long body", &Created{Handshake: hs}, Size, nil, ErrBadLength},
		{"destroy", &Destroy{ReasonPayment}, BodyLen, []byte{8}, nil},
		{"destroy unknown", &Destroy{Reason(10)}, BodyLen, nil, ErrUnknownReason},
		{"destroy short body", &Destroy{ReasonNone}, 0, nil, ErrBadLength},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := bytes.Repeat([]byte{0xdd}, tt.n)
			err := tt.m.MarshalBody(body)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(body, tt.want) {
				t.Fatalf("body starts %x, want %x", body[:len(tt.want)], tt.want)
			}
			n := len(tt.want)
			switch m := tt.m.(type) {
			case *Create:
				n = 3 + len(m.Handshake)
			case *Created:
				n = 2 + len(m.Handshake)
			}
			if !allZero(body[n:]) {
				t.Fatal("padding not zeroed")
			}
		})
	}
}
