package circuit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/co-infuse/co-infuse/circuit/cell"
)

var update = flag.Bool("update", false, "rewrite testdata/onion.json from the code")

const vectorFile = "onion.json"

// onionVector is one golden onion (PROTOCOL.md §3). Keys are derived from
// names so the file stays readable: fwd key of hop k = sha256("fwd k").
type onionVector struct {
	Name      string `json:"name"`
	Direction string `json:"direction"` // "forward" or "backward"
	Hops      int    `json:"hops"`      // path length; the message is for/from the last
	Cmd       uint8  `json:"cmd"`
	Stream    uint16 `json:"stream"`
	Data      string `json:"data"` // hex
	Body      string `json:"body"` // hex, 4091 bytes
	// MustFail: flip bit FlipBit of Body (or replay it) and expect the
	// first hop (forward) or the client (backward) to reject it.
	MustFail string `json:"must_fail,omitempty"` // "", "flip", "replay", "cookie"
	FlipBit  int    `json:"flip_bit,omitempty"`
}

func vectorKeys(n int) []*onionKeys {
	ks := make([]*onionKeys, n)
	for k := range n {
		f := sha256.Sum256([]byte{'f', 'w', 'd', byte(k + 1)})
		b := sha256.Sum256([]byte{'b', 'w', 'd', byte(k + 1)})
		c := sha256.Sum256([]byte{'c', 'k', byte(k + 1)})
		fl, _ := newLayer(f)
		bl, _ := newLayer(b)
		ks[k] = &onionKeys{fwd: fl, bwd: bl, cookie: [cell.CookieLen]byte(c[:8])}
	}
	return ks
}

// buildVector makes the body for v from the code under test.
func buildVector(t *testing.T, v onionVector) []byte {
	data, _ := hex.DecodeString(v.Data)
	body := make([]byte, cell.BodyLen)
	ks := vectorKeys(v.Hops)
	d := v.Hops
	switch v.Direction {
	case "forward":
		o := onionOff(d)
		if err := cell.EncodeRelay(body[o+hdrLen:o+cell.OnionLen(d)-cell.TagLen], cell.RelayCmd(v.Cmd), v.Stream, data); err != nil {
			t.Fatal(err)
		}
		if err := sealForward(ks, d, body); err != nil {
			t.Fatal(err)
		}
	case "backward":
		if err := cell.EncodeRelay(body[hdrLen:cell.OnionLen(d)-cell.TagLen], cell.RelayCmd(v.Cmd), v.Stream, data); err != nil {
			t.Fatal(err)
		}
		if err := sealHere(ks[d-1].bwd, &ks[d-1].cookie, d, body); err != nil {
			t.Fatal(err)
		}
		for k := d - 1; k >= 1; k-- {
			if err := wrapBackward(ks[k-1].bwd, &ks[k-1].cookie, k, body); err != nil {
				t.Fatal(err)
			}
		}
	default:
		t.Fatalf("direction %q", v.Direction)
	}
	return body
}

// receive runs the receiving side on body and returns the relay message.
func receive(v onionVector, body []byte) (cell.Relay, error) {
	ks := vectorKeys(v.Hops)
	if v.MustFail == "cookie" {
		ks[0].cookie[0] ^= 0xff
	}
	var region []byte
	if v.Direction == "forward" {
		for k := 1; k <= v.Hops; k++ {
			if v.MustFail == "replay" && k == 1 {
				cp := bytes.Clone(body)
				if _, err := peelForward(ks[0].fwd, &ks[0].cookie, 1, cp); err != nil {
					return cell.Relay{}, err
				}
			}
			kind, err := peelForward(ks[k-1].fwd, &ks[k-1].cookie, k, body)
			if err != nil {
				return cell.Relay{}, err
			}
			want := byte(kindOnward)
			if k == v.Hops {
				want = kindHere
			}
			if kind != want {
				return cell.Relay{}, errors.New("wrong kind")
			}
		}
		region = body[hdrLen : cell.OnionLen(v.Hops)-cell.TagLen]
	} else {
		if v.MustFail == "replay" {
			if _, _, err := openBackward(ks, bytes.Clone(body)); err != nil {
				return cell.Relay{}, err
			}
		}
		k, r, err := openBackward(ks, body)
		if err != nil {
			return cell.Relay{}, err
		}
		if k != v.Hops {
			return cell.Relay{}, errors.New("wrong hop spoke")
		}
		region = r
	}
	return cell.DecodeRelay(region)
}

func defaultVectors() []onionVector {
	vs := []onionVector{
		{Name: "forward 1 hop BEGIN", Direction: "forward", Hops: 1, Cmd: uint8(cell.RelayBegin), Stream: 1, Data: hex.EncodeToString([]byte("\x00\x0e127.0.0.1:8333"))},
		{Name: "forward 3 hops DATA", Direction: "forward", Hops: 3, Cmd: uint8(cell.RelayData), Stream: 7, Data: hex.EncodeToString([]byte("hello onion"))},
		{Name: "forward 8 hops DROP", Direction: "forward", Hops: 8, Cmd: uint8(cell.RelayDrop), Stream: 0},
		{Name: "backward 3 hops DATA", Direction: "backward", Hops: 3, Cmd: uint8(cell.RelayData), Stream: 7, Data: hex.EncodeToString([]byte("hello client"))},
		{Name: "backward 2 hops SENDME", Direction: "backward", Hops: 2, Cmd: uint8(cell.RelaySendme), Stream: 0},
	}
	for _, base := range []onionVector{vs[1], vs[3]} {
		for _, f := range []struct {
			kind string
			bit  int
		}{{"flip", 0}, {"flip", 8 * 100}, {"flip", 8*cell.BodyLen - 1}, {"replay", 0}, {"cookie", 0}} {
			v := base
			v.Name = base.Name + " " + f.kind
			v.MustFail, v.FlipBit = f.kind, f.bit
			vs = append(vs, v)
		}
	}
	return vs
}

func loadVectors(t *testing.T) []onionVector {
	path := filepath.Join("testdata", vectorFile)
	if *update {
		vs := defaultVectors()
		for i := range vs {
			vs[i].Body = hex.EncodeToString(buildVector(t, vs[i]))
		}
		b, _ := json.MarshalIndent(vs, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var vs []onionVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestOnionVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			golden, err := hex.DecodeString(v.Body)
			if err != nil || len(golden) != cell.BodyLen {
				t.Fatalf("bad body in vector: %v", err)
			}
			// Encode: the code produces the golden bytes.
			if got := buildVector(t, v); !bytes.Equal(got, golden) {
				t.Fatal("encoded onion differs from golden vector")
			}
			body := bytes.Clone(golden)
			if v.MustFail == "flip" {
				body[v.FlipBit/8] ^= 1 << (v.FlipBit % 8)
			}
			m, err := receive(v, body)
			if v.MustFail != "" {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			data, _ := hex.DecodeString(v.Data)
			if m.Cmd != cell.RelayCmd(v.Cmd) || m.StreamID != v.Stream || !bytes.Equal(m.Data, data) {
				t.Fatalf("decoded %v/%d/%x", m.Cmd, m.StreamID, m.Data)
			}
			if v.Direction == "forward" {
				// The last hop's body has a zero tail (§3.1).
				if tail := body[cell.OnionLen(v.Hops):]; !bytes.Equal(tail, make([]byte, len(tail))) {
					t.Fatal("non-zero tail after peeling")
				}
			}
		})
	}
}

func TestLayerCounter(t *testing.T) {
	t.Parallel()
	var k [32]byte
	a, _ := newLayer(k)
	b, _ := newLayer(k)
	buf := make([]byte, 64)
	cells := make([][]byte, 3)
	for i := range cells {
		cells[i] = bytes.Clone(buf)
		if err := a.seal(cells[i]); err != nil {
			t.Fatal(err)
		}
	}
	if bytes.Equal(cells[0], cells[1]) {
		t.Fatal("same ciphertext under two counters")
	}
	// Out of order fails: the counter is implicit (§3.3).
	if err := b.open(bytes.Clone(cells[1])); !errors.Is(err, ErrProtocol) {
		t.Fatalf("reordered open = %v", err)
	}
	a.ctr = ^uint64(0)
	if err := a.seal(bytes.Clone(buf)); !errors.Is(err, errCounter) {
		t.Fatalf("exhausted counter = %v", err)
	}
}

// FuzzPeelForward feeds arbitrary bodies to a first hop: it must never
// panic, and must reject anything it did not see sealed.
func FuzzPeelForward(f *testing.F) {
	for _, v := range defaultVectors() {
		if v.Direction == "forward" && v.MustFail == "" {
			f.Add(mustHex(v.Body), uint8(v.Hops))
		}
	}
	f.Add(make([]byte, cell.BodyLen), uint8(1))
	f.Fuzz(func(t *testing.T, body []byte, depth uint8) {
		ks := vectorKeys(1)
		body = append(bytes.Clone(body), make([]byte, max(0, cell.BodyLen-len(body)))...)[:cell.BodyLen]
		orig := bytes.Clone(body)
		kind, err := peelForward(ks[0].fwd, &ks[0].cookie, int(depth%cell.MaxHops)+1, body)
		if err == nil {
			// Only a body sealed with hop 1's key at counter 0 opens.
			ks2 := vectorKeys(1)
			re := bytes.Clone(orig)
			if kind == kindOnward {
				return
			}
			n := cell.OnionLen(int(depth%cell.MaxHops) + 1)
			if err := ks2[0].fwd.open(re[:n]); err != nil {
				t.Fatalf("peel accepted a body that does not open: %v", err)
			}
		}
	})
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzOpenBackward feeds arbitrary bodies to a client with three hops: it
// must never panic, and anything it accepts must name a hop of the path
// and a region inside the body.
func FuzzOpenBackward(f *testing.F) {
	for _, v := range defaultVectors() {
		if v.Direction == "backward" {
			f.Add(mustHex(v.Body))
		}
	}
	f.Add(make([]byte, cell.BodyLen))
	f.Fuzz(func(t *testing.T, body []byte) {
		body = append(bytes.Clone(body), make([]byte, max(0, cell.BodyLen-len(body)))...)[:cell.BodyLen]
		k, region, err := openBackward(vectorKeys(3), body)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v is not a protocol error", err)
			}
			return
		}
		if k < 1 || k > 3 || len(region) != cell.PayloadLen(k) {
			t.Fatalf("accepted hop %d with a %d-byte region", k, len(region))
		}
	})
}
