package cell

import (
	"bytes"
	"errors"
	"testing"
)

func TestRelayStreamRules(t *testing.T) {
	t.Parallel()
	// PROTOCOL.md §5 table: which stream ids each command takes.
	tests := []struct {
		cmd           RelayCmd
		zero, nonzero bool
		data          []byte
	}{
		{RelayBegin, false, true, []byte{0, 4, 'h', ':', '8', '0'}},
		{RelayData, false, true, []byte("x")},
		{RelayEnd, false, true, []byte{0}},
		{RelayConnected, false, true, []byte{0}},
		{RelaySendme, true, true, nil},
		{RelayExtend, true, false, []byte{1}},
		{RelayExtended, true, false, []byte{1}},
		{RelayDrop, true, false, []byte{1, 2, 3}},
		{RelayResolve, false, true, []byte{1, 'a'}},
		{RelayResolved, false, true, []byte{1}},
		{RelayTopUp, true, false, []byte{1}},
		{RelayTopUpAck, true, false, []byte{1}},
		{RelayTeardown, true, false, []byte{4}},
		{RelayCmd(0), false, false, nil},
		{RelayCmd(14), false, false, nil},
		{RelayCmd(255), false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.cmd.String(), func(t *testing.T) {
			t.Parallel()
			for _, s := range []struct {
				id uint16
				ok bool
			}{{0, tt.zero}, {1, tt.nonzero}, {0xffff, tt.nonzero}} {
				if got := tt.cmd.StreamOK(s.id); got != s.ok {
					t.Errorf("StreamOK(%d) = %v, want %v", s.id, got, s.ok)
				}
				buf := make([]byte, 64)
				err := EncodeRelay(buf, tt.cmd, s.id, tt.data)
				if (err == nil) != s.ok {
					t.Fatalf("EncodeRelay stream %d: err %v, want ok=%v", s.id, err, s.ok)
				}
				// Hand-built frame: the decoder must agree with the encoder.
				raw := make([]byte, 64)
				raw[0], raw[1], raw[2], raw[4] = byte(tt.cmd), byte(s.id>>8), byte(s.id), byte(len(tt.data))
				copy(raw[5:], tt.data)
				r, err := DecodeRelay(raw)
				if (err == nil) != s.ok {
					t.Fatalf("DecodeRelay stream %d: err %v, want ok=%v", s.id, err, s.ok)
				}
				if !s.ok {
					want := ErrBadStream
					if !tt.cmd.Valid() {
						want = ErrUnknownCommand
					}
					if !errors.Is(err, want) {
						t.Fatalf("DecodeRelay: err %v, want %v", err, want)
					}
					continue
				}
				if !bytes.Equal(buf, raw) {
					t.Fatalf("EncodeRelay %x, want %x", buf, raw)
				}
				if r.Cmd != tt.cmd || r.StreamID != s.id || !bytes.Equal(r.Data, tt.data) {
					t.Fatalf("decoded %+v", r)
				}
			}
		})
	}
}

func TestEncodeRelay(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		dstLen int
		cmd    RelayCmd
		stream uint16
		data   []byte
		want   []byte // prefix; the rest must be zero
		err    error
	}{
		{"data", 16, RelayData, 1, []byte("hi"), []byte{2, 0, 1, 0, 2, 'h', 'i'}, nil},
		{"exact fit", 7, RelayData, 1, []byte("hi"), []byte{2, 0, 1, 0, 2, 'h', 'i'}, nil},
		{"max at depth 8", PayloadLen(8), RelayData, 9, make([]byte, MaxData(8)), []byte{2, 0, 9, 0x0f, 0x2e}, nil},
		{"one too many", PayloadLen(8), RelayData, 9, make([]byte, MaxData(8)+1), nil, ErrTooLong},
		{"over 64 KiB", 70000, RelayDrop, 0, make([]byte, 0x10000), nil, ErrTooLong},
		{"dst shorter than header", 4, RelaySendme, 0, nil, nil, ErrTooLong},
		{"empty data", 16, RelayData, 1, nil, nil, ErrShort},
		{"sendme with data", 16, RelaySendme, 1, []byte{1}, nil, ErrTrailing},
		{"unknown command", 16, RelayCmd(99), 1, nil, nil, ErrUnknownCommand},
		{"bad stream", 16, RelayExtend, 1, []byte{1}, nil, ErrBadStream},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dst := bytes.Repeat([]byte{0xcc}, tt.dstLen)
			err := EncodeRelay(dst, tt.cmd, tt.stream, tt.data)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(dst, tt.want) {
				t.Fatalf("got %x, want prefix %x", dst[:len(tt.want)], tt.want)
			}
			if !bytes.Equal(dst[RelayHeaderLen:RelayHeaderLen+len(tt.data)], tt.data) {
				t.Fatal("data not copied")
			}
			if !allZero(dst[RelayHeaderLen+len(tt.data):]) {
				t.Fatal("tail not zero-filled")
			}
		})
	}
}

func TestEncodeRelayInPlace(t *testing.T) {
	t.Parallel()
	// A caller may build the body at dst[RelayHeaderLen:] and encode in place.
	dst := bytes.Repeat([]byte{0xcc}, PayloadLen(2))
	copy(dst[RelayHeaderLen:], "payload")
	if err := EncodeRelay(dst, RelayData, 3, dst[RelayHeaderLen:RelayHeaderLen+7]); err != nil {
		t.Fatal(err)
	}
	r, err := DecodeRelay(dst)
	if err != nil {
		t.Fatal(err)
	}
	if string(r.Data) != "payload" || r.StreamID != 3 {
		t.Fatalf("got %+v", r)
	}
	// Data aliases the source with its capacity cut, so appending cannot
	// overwrite the padding.
	if &r.Data[0] != &dst[RelayHeaderLen] || cap(r.Data) != len(r.Data) {
		t.Fatal("Data does not alias src or has spare capacity")
	}
}
