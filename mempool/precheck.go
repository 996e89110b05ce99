package mempool

import (
	"bytes"
	"encoding/hex"

	"github.com/btcsuite/btcd/wire"
)

// decodeFailed is bitcoind's message for every transaction it cannot
// decode (src/rpc/mempool.cpp sendrawtransaction).
const decodeFailed = "TX decode failed. Make sure the tx has at least one input."

// CheckedTx is a transaction that passed CheckTx.
type CheckedTx struct {
	// Raw is the serialized transaction, exactly the bytes the user gave.
	Raw []byte
	// TxID is the transaction's id in RPC (reversed) hex.
	TxID string
	// Hash is the txid in internal byte order (QUERY).
	Hash [32]byte
	// WTxID is the witness txid in RPC hex (the txid when the
	// transaction has no witness), as getprivatebroadcastinfo shows it.
	WTxID string
}

// CheckTx decodes hexTx as bitcoind's sendrawtransaction does, with btcd's
// wire and nothing else: hex, at most MaxTxBytes, one whole transaction
// (with or without witness) and no trailing bytes, at least one input. It
// makes no network call and applies no policy, so that every other verdict
// is the backend's own. A failure is an *Error with code -22.
func CheckTx(hexTx string) (CheckedTx, error) {
	if len(hexTx) == 0 || len(hexTx) > 2*MaxTxBytes || len(hexTx)%2 != 0 {
		return CheckedTx{}, rpcErr(CodeDecode, decodeFailed)
	}
	raw, err := hex.DecodeString(hexTx)
	if err != nil {
		return CheckedTx{}, rpcErr(CodeDecode, decodeFailed)
	}
	return CheckRawTx(raw)
}

// CheckRawTx is CheckTx for bytes already decoded from hex; it keeps raw.
func CheckRawTx(raw []byte) (CheckedTx, error) {
	if len(raw) == 0 || len(raw) > MaxTxBytes {
		return CheckedTx{}, rpcErr(CodeDecode, decodeFailed)
	}
	var tx wire.MsgTx
	r := bytes.NewReader(raw)
	if err := tx.Deserialize(r); err != nil || r.Len() != 0 || len(tx.TxIn) == 0 {
		return CheckedTx{}, rpcErr(CodeDecode, decodeFailed)
	}
	h := tx.TxHash()
	return CheckedTx{Raw: raw, TxID: h.String(), Hash: h, WTxID: tx.WitnessHash().String()}, nil
}
