package mint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/co-infuse/co-infuse/voucher"
)

var (
	bucketQuotes  = []byte("quotes")
	bucketKeysets = []byte("keysets")
)

// Quote states.
const (
	stateOpen   = 1 // quoted, not yet signed
	stateIssued = 2 // blind signatures stored and possibly sent
)

const quoteRecordVersion = 1

// quoteRecord is a quote as stored in bucketQuotes under its id.
type quoteRecord struct {
	state   uint8
	amount  uint64
	keyset  voucher.KeysetID // the keyset quoted (a suggestion to the client)
	created time.Time
	expires time.Time // the invoice's expiry
	payHash [32]byte
	payReq  string
	reqHash [32]byte // issued: SHA-256 of the mint request that was signed
	sigs    [][]byte // issued: the blind signatures, in request order
}

var errRecord = errors.New("mint: corrupt quote record")

// encode: ver(1) | state(1) | amount(8) | keyset(8) | created(8) |
// expires(8) | pay_hash(32) | payreq_len(2) | payreq | req_hash(32) |
// n(1) | (len(2) | sig)*n.
func (q *quoteRecord) encode() []byte {
	b := []byte{quoteRecordVersion, q.state}
	b = binary.BigEndian.AppendUint64(b, q.amount)
	b = append(b, q.keyset[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(q.created.Unix()))
	b = binary.BigEndian.AppendUint64(b, uint64(q.expires.Unix()))
	b = append(b, q.payHash[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(q.payReq)))
	b = append(b, q.payReq...)
	b = append(b, q.reqHash[:]...)
	b = append(b, byte(len(q.sigs)))
	for _, s := range q.sigs {
		b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
		b = append(b, s...)
	}
	return b
}

func decodeQuoteRecord(b []byte) (*quoteRecord, error) {
	q := &quoteRecord{}
	take := func(n int) []byte {
		if n < 0 || len(b) < n {
			b = nil
			return nil
		}
		out := b[:n]
		b = b[n:]
		return out
	}
	hdr := take(2 + 8 + voucher.KeysetIDSize + 8 + 8 + 32 + 2)
	if hdr == nil || hdr[0] != quoteRecordVersion {
		return nil, errRecord
	}
	q.state = hdr[1]
	q.amount = binary.BigEndian.Uint64(hdr[2:])
	copy(q.keyset[:], hdr[10:18])
	q.created = time.Unix(int64(binary.BigEndian.Uint64(hdr[18:])), 0)
	q.expires = time.Unix(int64(binary.BigEndian.Uint64(hdr[26:])), 0)
	copy(q.payHash[:], hdr[34:66])
	pr := take(int(binary.BigEndian.Uint16(hdr[66:])))
	rh := take(32)
	n := take(1)
	if pr == nil || rh == nil || n == nil {
		return nil, errRecord
	}
	q.payReq = string(pr)
	copy(q.reqHash[:], rh)
	for range int(n[0]) {
		l := take(2)
		if l == nil {
			return nil, errRecord
		}
		s := take(int(binary.BigEndian.Uint16(l)))
		if s == nil {
			return nil, errRecord
		}
		q.sigs = append(q.sigs, append([]byte(nil), s...))
	}
	if len(b) != 0 || (q.state != stateOpen && q.state != stateIssued) {
		return nil, fmt.Errorf("%w: trailing bytes or state", errRecord)
	}
	return q, nil
}
