package mempool

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// testTx returns a decodable (unsigned) transaction spending a made-up
// outpoint n, in hex, and its txid.
func testTx(t testing.TB, n uint32, witness bool) (string, string) {
	t.Helper()
	tx := wire.NewMsgTx(2)
	in := wire.NewTxIn(wire.NewOutPoint(&chainhash.Hash{1, 2, 3}, n), nil, nil)
	if witness {
		in.Witness = wire.TxWitness{[]byte{1, 2, 3}}
	}
	tx.AddTxIn(in)
	tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(buf.Bytes()), tx.TxHash().String()
}

func TestCheckTx(t *testing.T) {
	t.Parallel()
	for _, w := range []bool{false, true} {
		h, id := testTx(t, 0, w)
		c, err := CheckTx(h)
		if err != nil || c.TxID != id {
			t.Fatalf("witness=%v: %v %s want %s", w, err, c.TxID, id)
		}
		if chainhash.Hash(c.Hash).String() != id {
			t.Fatal("hash and txid differ")
		}
	}
	good, _ := testTx(t, 0, true)
	for _, tc := range []struct{ name, hex string }{
		{"empty", ""},
		{"odd", "0"},
		{"not hex", "zz"},
		{"truncated", good[:len(good)-2]},
		{"trailing", good + "00"},
		{"too big", strings.Repeat("00", MaxTxBytes+1)},
		{"garbage", "0100000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := CheckTx(tc.hex)
			var e *Error
			if !errors.As(err, &e) || e.RPCCode() != CodeDecode || e.Message != decodeFailed {
				t.Fatalf("got %v, want -22 %q", err, decodeFailed)
			}
		})
	}
}

// FuzzCheckTx: arbitrary hex never panics; what passes re-serializes to
// the same bytes.
func FuzzCheckTx(f *testing.F) {
	a, _ := testTx(f, 0, false)
	b, _ := testTx(f, 1, true)
	f.Add(a)
	f.Add(b)
	f.Add("0200000001")
	f.Fuzz(func(t *testing.T, h string) {
		c, err := CheckTx(h)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code != CodeDecode {
				t.Fatalf("error without code -22: %v", err)
			}
			return
		}
		var tx wire.MsgTx
		if err := tx.Deserialize(bytes.NewReader(c.Raw)); err != nil {
			t.Fatal(err)
		}
		if tx.TxHash().String() != c.TxID {
			t.Fatal("txid mismatch")
		}
	})
}
