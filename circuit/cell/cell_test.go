package cell

import (
	"bytes"
	"strconv"
	"sync"
	"testing"
)

func TestCellHeader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		id   CircID
		cmd  Command
		head [HeaderLen]byte
	}{
		{"padding", 0, CmdPadding, [HeaderLen]byte{0, 0, 0, 0, 0}},
		{"create", 1, CmdCreate, [HeaderLen]byte{0, 0, 0, 1, 1}},
		{"relay", 0x01020304, CmdRelay, [HeaderLen]byte{1, 2, 3, 4, 3}},
		{"destroy max id", 0xffffffff, CmdDestroy, [HeaderLen]byte{0xff, 0xff, 0xff, 0xff, 4}},
		{"unknown command", 7, Command(200), [HeaderLen]byte{0, 0, 0, 7, 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := new(Cell)
			c.SetCircID(tt.id)
			c.SetCommand(tt.cmd)
			if [HeaderLen]byte(c[:HeaderLen]) != tt.head {
				t.Fatalf("header %x, want %x", c[:HeaderLen], tt.head)
			}
			if c.CircID() != tt.id || c.Command() != tt.cmd {
				t.Fatalf("read back %d %v, want %d %v", c.CircID(), c.Command(), tt.id, tt.cmd)
			}
			body := c.Body()
			if len(body) != BodyLen || &body[0] != &c[HeaderLen] {
				t.Fatal("Body does not alias c[HeaderLen:]")
			}
			body[BodyLen-1] = 9
			c.Reset()
			if *c != (Cell{}) {
				t.Fatal("Reset left bytes")
			}
		})
	}
}

func TestStrings(t *testing.T) {
	t.Parallel()
	tests := []struct{ got, want string }{
		{CmdPadding.String(), "PADDING"},
		{CmdDestroy.String(), "DESTROY"},
		{Command(5).String(), "Command(5)"},
		{ReasonNone.String(), "none"},
		{ReasonFinished.String(), "finished"},
		{Reason(10).String(), "Reason(10)"},
		{RelayBegin.String(), "BEGIN"},
		{RelayTopUpAck.String(), "TOPUP_ACK"},
		{RelayCmd(0).String(), "RelayCmd(0)"},
		{RelayTeardown.String(), "TEARDOWN"},
		{RelayCmd(14).String(), "RelayCmd(14)"},
		{EndDone.String(), "done"},
		{EndResourceLimit.String(), "resource-limit"},
		{EndTorSocks.String(), "tor-socks"},
		{EndReason(13).String(), "EndReason(13)"},
		{ServiceExit.String(), "exit"},
		{ServiceRendezvous.String(), "rendezvous"},
		{ServiceMint.String(), "mint"},
		{ServiceTorGateway.String(), "tor-gateway"},
		{Service(5).String(), "Service(5)"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
	// Every known value has a name; the first unknown one has none.
	for c := CmdPadding; c <= CmdDestroy+1; c++ {
		named := c.String() != "Command("+itoa(int(c))+")"
		if named != c.Valid() {
			t.Errorf("Command %d: named %v, valid %v", c, named, c.Valid())
		}
	}
	for c := RelayCmd(0); c <= RelayTeardown+1; c++ {
		named := c.String() != "RelayCmd("+itoa(int(c))+")"
		if named != c.Valid() {
			t.Errorf("RelayCmd %d: named %v, valid %v", c, named, c.Valid())
		}
	}
	for r := Reason(0); r <= ReasonFinished+1; r++ {
		named := r.String() != "Reason("+itoa(int(r))+")"
		if named != r.Valid() {
			t.Errorf("Reason %d: named %v, valid %v", r, named, r.Valid())
		}
	}
	for r := EndReason(0); r <= EndResourceLimit+1; r++ {
		named := r.String() != "EndReason("+itoa(int(r))+")"
		if named != r.Valid() {
			t.Errorf("EndReason %d: named %v, valid %v", r, named, r.Valid())
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestLengths(t *testing.T) {
	t.Parallel()
	// Figures from PROTOCOL.md §3.1: L(k) = 4091 − 25·(k−1).
	tests := []struct {
		depth                  int
		onion, payload, maxDat int
	}{
		{0, 0, 0, 0},
		{1, 4091, 4066, 4061},
		{2, 4066, 4041, 4036},
		{3, 4041, 4016, 4011},
		{8, 3916, 3891, 3886},
		{9, 0, 0, 0},
		{-1, 0, 0, 0},
	}
	for _, tt := range tests {
		if got := OnionLen(tt.depth); got != tt.onion {
			t.Errorf("OnionLen(%d) = %d, want %d", tt.depth, got, tt.onion)
		}
		if got := PayloadLen(tt.depth); got != tt.payload {
			t.Errorf("PayloadLen(%d) = %d, want %d", tt.depth, got, tt.payload)
		}
		if got := MaxData(tt.depth); got != tt.maxDat {
			t.Errorf("MaxData(%d) = %d, want %d", tt.depth, got, tt.maxDat)
		}
	}
	// A hop's onion carries the next hop's whole onion (§3.1).
	for d := 1; d < MaxHops; d++ {
		if PayloadLen(d) != OnionLen(d+1) {
			t.Errorf("PayloadLen(%d) = %d, OnionLen(%d) = %d", d, PayloadLen(d), d+1, OnionLen(d+1))
		}
	}
	if MaxRelayData != MaxData(1) || LayerOverhead != 25 || BodyLen != 4091 {
		t.Error("constants disagree with PROTOCOL.md")
	}
}

func TestPool(t *testing.T) {
	t.Parallel()
	t.Run("get is zeroed and put clears", func(t *testing.T) {
		t.Parallel()
		p := NewPool(2)
		c := p.Get()
		if *c != (Cell{}) {
			t.Fatal("fresh cell not zero")
		}
		for i := range c {
			c[i] = 0xa5
		}
		p.Put(c)
		if *c != (Cell{}) {
			t.Fatal("Put did not zero the cell")
		}
		if d := p.Get(); d != c || *d != (Cell{}) {
			t.Fatal("pool did not hand back the zeroed idle cell")
		}
	})
	t.Run("bounded", func(t *testing.T) {
		t.Parallel()
		p := NewPool(2)
		cs := []*Cell{new(Cell), new(Cell), new(Cell)}
		for _, c := range cs {
			p.Put(c)
		}
		if len(p.free) != 2 {
			t.Fatalf("pool keeps %d cells, want 2", len(p.free))
		}
		a, b, c := p.Get(), p.Get(), p.Get()
		if a == b || c == a || c == b || c == cs[2] {
			t.Fatal("third Get must allocate a new cell")
		}
	})
	t.Run("zero max keeps nothing", func(t *testing.T) {
		t.Parallel()
		for _, max := range []int{0, -3} {
			p := NewPool(max)
			c := new(Cell)
			c[100] = 1
			p.Put(c)
			p.Put(nil)
			if *c != (Cell{}) {
				t.Fatal("Put did not zero")
			}
			if p.Get() == c {
				t.Fatal("pool with max ≤ 0 kept a cell")
			}
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		p := NewPool(8)
		var wg sync.WaitGroup
		errs := make(chan string, 4)
		for g := range 4 {
			wg.Go(func() {
				for i := range 500 {
					c := p.Get()
					if *c != (Cell{}) {
						errs <- "Get returned a dirty cell"
						return
					}
					c.SetCircID(CircID(g*1000 + i))
					p.Put(c)
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Fatal(e)
		}
	})
}

func TestNoAllocs(t *testing.T) {
	// Not parallel: AllocsPerRun needs a quiet heap.
	c := new(Cell)
	p := NewPool(4)
	p.Put(p.Get())
	region := make([]byte, PayloadLen(1))
	data := make([]byte, MaxData(1))
	createBody := make([]byte, BodyLen)
	createOut := make([]byte, BodyLen)
	if err := (&Create{Depth: 1, Handshake: make([]byte, 48)}).MarshalBody(createBody); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    func()
	}{
		{"cell accessors", func() {
			c.SetCircID(c.CircID() + 1)
			c.SetCommand(c.Command())
			_ = c.Body()
		}},
		{"pool", func() { p.Put(p.Get()) }},
		{"encode relay", func() {
			if EncodeRelay(region, RelayData, 1, data) != nil {
				panic("encode")
			}
		}},
		{"decode relay", func() {
			if _, err := DecodeRelay(region); err != nil {
				panic("decode")
			}
		}},
		{"create body", func() {
			var m Create
			if m.UnmarshalBody(createBody) != nil || m.MarshalBody(createOut) != nil {
				panic("create")
			}
		}},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(100, tt.f); n != 0 {
			t.Errorf("%s: %v allocs per run, want 0", tt.name, n)
		}
	}
}

func TestCreateMarshalInPlace(t *testing.T) {
	t.Parallel()
	// Re-encoding a parsed body into the same buffer must not corrupt the
	// aliased handshake, whatever the overlap.
	c := new(Cell)
	hs := []byte{9, 8, 7, 6, 5}
	if err := (&Create{Depth: 3, Handshake: hs}).MarshalBody(c.Body()); err != nil {
		t.Fatal(err)
	}
	var m Create
	if err := m.UnmarshalBody(c.Body()); err != nil {
		t.Fatal(err)
	}
	m.Depth = 4
	if err := m.MarshalBody(c.Body()); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(c.Body(), []byte{4, 0, 5, 9, 8, 7, 6, 5}) || !allZero(c.Body()[8:]) {
		t.Fatalf("in-place CREATE body %x", c.Body()[:10])
	}
	// Handshake taken from the very front of the body overlaps the header.
	m2 := Created{Handshake: c.Body()[:4]}
	want := append([]byte{0, 4}, c.Body()[:4]...)
	if err := m2.MarshalBody(c.Body()); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(c.Body(), want) || !allZero(c.Body()[len(want):]) {
		t.Fatalf("in-place CREATED body %x, want %x", c.Body()[:8], want)
	}
}
