package voucher

import (
	"crypto/sha256"
	"fmt"
)

// voucherVersion is the first byte of an encoded voucher (VOUCHERS.md §2).
const voucherVersion = 1

// Voucher is a bearer token worth Amount sats at the node whose keyset
// Keyset signed it. Whoever holds the bytes can spend it once.
type Voucher struct {
	// Keyset names the keyset whose key for Amount signed Secret.
	Keyset KeysetID
	// Amount is the denomination in sats (a power of two).
	Amount uint64
	// Secret is the random message that was blindly signed.
	Secret [SecretSize]byte
	// Sig is the RSASSA-PSS signature over Secret (modulus length).
	Sig []byte
}

// EncodedLen returns the length of the voucher's encoding.
func (v *Voucher) EncodedLen() int { return 1 + KeysetIDSize + 1 + SecretSize + 2 + len(v.Sig) }

// AppendBinary appends the encoding
// version(1) | keyset(8) | exp(1) | secret(32) | sig_len(2) | sig.
func (v *Voucher) AppendBinary(b []byte) ([]byte, error) {
	e, ok := denomExp(v.Amount)
	if !ok {
		return nil, fmt.Errorf("%w: amount %d", ErrDenomination, v.Amount)
	}
	if len(v.Sig) < MinModulusBytes || len(v.Sig) > MaxModulusBytes {
		return nil, fmt.Errorf("%w: signature of %d bytes", ErrMalformed, len(v.Sig))
	}
	b = append(b, voucherVersion)
	b = append(b, v.Keyset[:]...)
	b = append(b, e)
	b = append(b, v.Secret[:]...)
	b = appendU16(b, uint16(len(v.Sig)))
	return append(b, v.Sig...), nil
}

// MarshalBinary returns the voucher's encoding.
func (v *Voucher) MarshalBinary() ([]byte, error) {
	return v.AppendBinary(make([]byte, 0, v.EncodedLen()))
}

// ParseVoucher decodes one voucher; trailing bytes are an error.
func ParseVoucher(b []byte) (Voucher, error) {
	r := reader{b: b}
	v, err := readVoucher(&r)
	if err != nil {
		return Voucher{}, err
	}
	if !r.finish() {
		return Voucher{}, fmt.Errorf("%w: voucher trailing bytes", ErrMalformed)
	}
	return v, nil
}

func readVoucher(r *reader) (Voucher, error) {
	var v Voucher
	if r.u8() != voucherVersion {
		return v, fmt.Errorf("%w: voucher version", ErrMalformed)
	}
	copy(v.Keyset[:], r.take(KeysetIDSize))
	e := r.u8()
	copy(v.Secret[:], r.take(SecretSize))
	n := int(r.u16())
	if r.bad || e > MaxDenomExp || n < MinModulusBytes || n > MaxModulusBytes {
		return Voucher{}, fmt.Errorf("%w: voucher header", ErrMalformed)
	}
	v.Amount = 1 << e
	v.Sig = r.copyOut(n)
	if r.bad {
		return Voucher{}, fmt.Errorf("%w: voucher truncated", ErrMalformed)
	}
	return v, nil
}

// SpendID is the voucher's key in the spent set: SHA-256 over a domain tag,
// the denomination exponent and the secret. The signature is not part of it,
// so a second valid signature over the same secret (PSS is randomized) is
// still the same voucher.
func (v *Voucher) SpendID() [32]byte {
	e, _ := denomExp(v.Amount)
	h := sha256.New()
	h.Write([]byte("co-infuse/spent/1"))
	h.Write([]byte{e})
	h.Write(v.Secret[:])
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// EncodeBatch encodes a redemption batch (the TOPUP payload, VOUCHERS.md
// §2.1): count(1) | voucher*count.
func EncodeBatch(vs []Voucher) ([]byte, error) {
	if len(vs) == 0 || len(vs) > MaxVouchersPerBatch {
		return nil, fmt.Errorf("%w: batch of %d vouchers", ErrMalformed, len(vs))
	}
	b := []byte{byte(len(vs))}
	for i := range vs {
		var err error
		if b, err = vs[i].AppendBinary(b); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// DecodeBatch decodes a redemption batch.
func DecodeBatch(b []byte) ([]Voucher, error) {
	r := reader{b: b}
	n := int(r.u8())
	if n == 0 || n > MaxVouchersPerBatch {
		return nil, fmt.Errorf("%w: batch count %d", ErrMalformed, n)
	}
	vs := make([]Voucher, 0, n)
	for range n {
		v, err := readVoucher(&r)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	if !r.finish() {
		return nil, fmt.Errorf("%w: batch trailing bytes", ErrMalformed)
	}
	return vs, nil
}
