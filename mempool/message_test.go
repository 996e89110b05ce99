package mempool

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFrameGolden(t *testing.T) {
	t.Parallel()
	var q Query
	for i := range q.TxID {
		q.TxID[i] = byte(i)
	}
	sub := Submit{Tx: []byte{0xaa, 0xbb}, MaxFeeRate: 10_000_000, HasMaxFeeRate: true}
	sb, err := sub.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	rej := Verdict{Status: Rejected, Code: -26, Message: "min relay fee not met"}
	rb, err := rej.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kind Kind
		body []byte
		want string
	}{
		{"submit", KindSubmit, sb, "0100000b" + "01" + "0000000000989680" + "aabb"},
		{"submit-default-fee", KindSubmit, []byte{0, 0xcc}, "01000002" + "00cc"},
		{"query", KindQuery, q.Marshal(), "02000020" + "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"},
		{"verdict-accepted", KindVerdict, []byte{0, 0, 0, 0, 0, 0}, "81000006" + "000000000000"},
		{"verdict-rejected", KindVerdict, rb, "8100001b" + "01ffffffe615" + hex.EncodeToString([]byte("min relay fee not met"))},
		{"status", KindStatus, StateMempool.Marshal(), "82000001" + "01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteFrame(&buf, tc.kind, tc.body); err != nil {
				t.Fatal(err)
			}
			if got := hex.EncodeToString(buf.Bytes()); got != tc.want {
				t.Fatalf("encoded %s, want %s", got, tc.want)
			}
			k, body, err := ReadFrame(&buf)
			if err != nil || k != tc.kind || !bytes.Equal(body, tc.body) {
				t.Fatalf("decoded %v %x %v", k, body, err)
			}
		})
	}
	v, err := ParseVerdict(rb)
	if err != nil || v != rej {
		t.Fatalf("verdict round trip: %+v %v", v, err)
	}
	s2, err := ParseSubmit(sb)
	if err != nil || !bytes.Equal(s2.Tx, sub.Tx) || s2.MaxFeeRate != sub.MaxFeeRate || !s2.HasMaxFeeRate {
		t.Fatalf("submit round trip: %+v %v", s2, err)
	}
}

func TestFrameMustFail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		frame string
	}{
		{"unknown kind", "03000000"},
		{"query too long", "0200002100" + strings.Repeat("00", 32)},
		{"submit over bound", "01ffffff"},
		{"status too long", "820000020101"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tc.frame)
			if _, _, err := ReadFrame(bytes.NewReader(b)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
	if _, _, err := ReadFrame(bytes.NewReader([]byte{1, 0, 0, 5, 0})); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v", err)
	}
	bodies := []struct {
		name  string
		parse func([]byte) error
		body  string
	}{
		{"submit empty", func(b []byte) error { _, err := ParseSubmit(b); return err }, ""},
		{"submit no tx", func(b []byte) error { _, err := ParseSubmit(b); return err }, "00"},
		{"submit bad flags", func(b []byte) error { _, err := ParseSubmit(b); return err }, "02aa"},
		{"submit short fee", func(b []byte) error { _, err := ParseSubmit(b); return err }, "010000"},
		{"submit fee too high", func(b []byte) error { _, err := ParseSubmit(b); return err }, "01ffffffffffffffffaa"},
		{"query short", func(b []byte) error { _, err := ParseQuery(b); return err }, "00"},
		{"verdict short", func(b []byte) error { _, err := ParseVerdict(b); return err }, "0000000000"},
		{"verdict accepted with code", func(b []byte) error { _, err := ParseVerdict(b); return err }, "01000000" + "0100"},
		{"verdict rejected positive code", func(b []byte) error { _, err := ParseVerdict(b); return err }, "010000000100"},
		{"verdict unknown status", func(b []byte) error { _, err := ParseVerdict(b); return err }, "030000000000"},
		{"verdict length mismatch", func(b []byte) error { _, err := ParseVerdict(b); return err }, "01ffffffe60261"},
		{"verdict control char", func(b []byte) error { _, err := ParseVerdict(b); return err }, "01ffffffe6010a"},
		{"verdict accepted with message", func(b []byte) error { _, err := ParseVerdict(b); return err }, "00000000000161"},
		{"status unknown", func(b []byte) error { _, err := ParseStatus(b); return err }, "04"},
	}
	for _, tc := range bodies {
		t.Run(tc.name, func(t *testing.T) {
			b, _ := hex.DecodeString(tc.body)
			if err := tc.parse(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
}

// FuzzFrame decodes arbitrary bytes as a stream of frames and bodies; what
// decodes must encode back to the same bytes.
func FuzzFrame(f *testing.F) {
	f.Add([]byte("\x01\x00\x00\x02\x00\xcc"))
	f.Add([]byte("\x81\x00\x00\x06\x01\xff\xff\xff\xe6\x00"))
	f.Add([]byte("\x82\x00\x00\x01\x02"))
	f.Add(append([]byte("\x02\x00\x00\x20"), make([]byte, 32)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		for {
			k, body, err := ReadFrame(r)
			if err != nil {
				return
			}
			var re []byte
			switch k {
			case KindSubmit:
				s, err := ParseSubmit(body)
				if err != nil {
					continue
				}
				if re, err = s.Marshal(); err != nil {
					t.Fatalf("parsed submit does not encode: %v", err)
				}
			case KindQuery:
				q, err := ParseQuery(body)
				if err != nil {
					continue
				}
				re = q.Marshal()
			case KindVerdict:
				v, err := ParseVerdict(body)
				if err != nil {
					continue
				}
				if re, err = v.Marshal(); err != nil {
					t.Fatalf("parsed verdict does not encode: %v", err)
				}
			case KindStatus:
				st, err := ParseStatus(body)
				if err != nil {
					continue
				}
				re = st.Marshal()
			}
			if !bytes.Equal(re, body) {
				t.Fatalf("%v: re-encoded %x, want %x", k, re, body)
			}
		}
	})
}
