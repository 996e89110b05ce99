package cell

import (
	"bytes"
	"testing"
)

func BenchmarkEncodeRelay(b *testing.B) {
	for _, n := range []int{1, 512, MaxData(1)} {
		b.Run(itoa(n), func(b *testing.B) {
			dst := make([]byte, PayloadLen(1))
			data := bytes.Repeat([]byte{7}, n)
			b.SetBytes(int64(len(dst)))
			b.ReportAllocs()
			for b.Loop() {
				if err := EncodeRelay(dst, RelayData, 1, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecodeRelay(b *testing.B) {
	for _, n := range []int{1, 512, MaxData(1)} {
		b.Run(itoa(n), func(b *testing.B) {
			src := make([]byte, PayloadLen(1))
			if err := EncodeRelay(src, RelayData, 1, bytes.Repeat([]byte{7}, n)); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := DecodeRelay(src); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPaddingCheck checks a whole zero body, the worst case for a
// padding check.
func BenchmarkPaddingCheck(b *testing.B) {
	body := make([]byte, BodyLen)
	b.Run("allZero", func(b *testing.B) {
		b.SetBytes(BodyLen)
		for b.Loop() {
			if !allZero(body) {
				b.Fatal("non-zero")
			}
		}
	})
}

func BenchmarkCreate(b *testing.B) {
	body := make([]byte, BodyLen)
	m := Create{Depth: 1, Handshake: make([]byte, 48)}
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := m.MarshalBody(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		var out Create
		for b.Loop() {
			if err := out.UnmarshalBody(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkExtendUnmarshal(b *testing.B) {
	in := Extend{Peer: make([]byte, 38), Addrs: [][]byte{make([]byte, 8), make([]byte, 20)}, Handshake: make([]byte, 48)}
	in.Peer[0] = 1
	in.Addrs[0][0], in.Addrs[1][0] = 4, 41
	data, err := in.AppendBinary(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var out Extend
	for b.Loop() {
		if err := out.UnmarshalBinary(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPool(b *testing.B) {
	p := NewPool(64)
	b.ReportAllocs()
	for b.Loop() {
		p.Put(p.Get())
	}
}
