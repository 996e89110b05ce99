package cell

// OfferKind says what the payload of handshake message 1 carries
// (PROTOCOL.md §4.1).
type OfferKind uint8

const (
	// OfferNone: nothing offered (an empty message-1 payload). A paid hop
	// refuses it; a free hop accepts it.
	OfferNone OfferKind = 0
	// OfferVouchers: a voucher batch (VOUCHERS.md §2.1) for the hop to
	// redeem before it answers.
	OfferVouchers OfferKind = 1
	// OfferMintOnly: no payment; the client asks for a mint-only circuit
	// (§4.5), to buy this hop's vouchers from its mint.
	OfferMintOnly OfferKind = 2
)

// Offer is the payload of handshake message 1 (§4.1), inside the Noise
// encryption only the hop can remove:
//
//	empty                        OfferNone
//	kind(1)=1 | batch(1..)       OfferVouchers; batch is opaque here
//	kind(1)=2                    OfferMintOnly
//
// The encoding is canonical: OfferNone is the empty payload, never a kind
// byte of 0.
type Offer struct {
	Kind OfferKind
	// Batch is the voucher batch of OfferVouchers, non-empty; empty for
	// the other kinds. It aliases the input after UnmarshalBinary.
	Batch []byte
}

// MaxOfferLen bounds an encoded Offer: it must fit a CREATE's message 1
// (MaxCreateHandshake less the 32-byte ephemeral key and the 16-byte tag).
const MaxOfferLen = MaxCreateHandshake - 32 - 16

// AppendBinary appends the encoded offer to b.
func (m *Offer) AppendBinary(b []byte) ([]byte, error) {
	switch m.Kind {
	case OfferNone, OfferMintOnly:
		if len(m.Batch) != 0 {
			return b, wrap("offer: batch without vouchers kind", ErrTrailing)
		}
		if m.Kind == OfferNone {
			return b, nil
		}
		return append(b, byte(m.Kind)), nil
	case OfferVouchers:
		if len(m.Batch) == 0 {
			return b, wrap("offer: batch", ErrShort)
		}
		if 1+len(m.Batch) > MaxOfferLen {
			return b, wrap("offer: batch", ErrTooLong)
		}
		b = append(b, byte(m.Kind))
		return append(b, m.Batch...), nil
	}
	return b, wrap("offer: kind", ErrBadService)
}

// UnmarshalBinary parses a message-1 payload. It rejects an unknown kind,
// a kind byte of 0, an empty batch, bytes after a mint-only request and
// payloads over MaxOfferLen. On error m is unchanged.
func (m *Offer) UnmarshalBinary(data []byte) error {
	if len(data) == 0 {
		m.Kind, m.Batch = OfferNone, nil
		return nil
	}
	if len(data) > MaxOfferLen {
		return wrap("offer", ErrTooLong)
	}
	r := newReader(data)
	kind := OfferKind(r.u8()) // §4.1 kind
	switch kind {
	case OfferVouchers:
		batch := r.rest() // §4.1 batch
		if len(batch) == 0 {
			return wrap("offer: batch", ErrShort)
		}
		m.Kind, m.Batch = kind, batch
		return nil
	case OfferMintOnly:
		if err := r.done("offer: mint-only"); err != nil {
			return err
		}
		m.Kind, m.Batch = kind, nil
		return nil
	}
	return wrap("offer: kind", ErrBadService)
}

// AnswerStatus is a paid hop's verdict on an Offer (§4.1).
type AnswerStatus uint8

const (
	// AnswerPaid: the hop redeemed the batch and credited the session; Ack
	// says what it credited.
	AnswerPaid AnswerStatus = 0
	// AnswerRefused: the hop refused the handshake; Ack says why. The hop
	// sends DESTROY (reason payment) right after and keeps no state.
	AnswerRefused AnswerStatus = 1
	// AnswerMintOnly: the hop took no payment and made the circuit
	// mint-only (§4.5).
	AnswerMintOnly AnswerStatus = 2
)

// MaxAckLen bounds an Answer's Ack (a payment.Ack is 26 bytes).
const MaxAckLen = 64

// Answer is the payload of handshake message 2 (§4.1), forward secret:
//
//	cookie(8)                            a free hop: it took nothing
//	cookie(8) | status(1) | ack(0..64)   a paid hop's verdict
//
// Ack is opaque here (PROTOCOL.md §5.3 defines it; payment parses it).
type Answer struct {
	Cookie [CookieLen]byte
	// Paid: the hop is paid and answered with Status and Ack. False for a
	// free hop (the 8-byte form).
	Paid   bool
	Status AnswerStatus
	// Ack aliases the input after UnmarshalBinary; at most MaxAckLen bytes.
	Ack []byte
}

// AppendBinary appends the encoded answer to b.
func (m *Answer) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, m.Cookie[:]...)
	if !m.Paid {
		if m.Status != 0 || len(m.Ack) != 0 {
			return b, wrap("answer: status of a free hop", ErrTrailing)
		}
		return b, nil
	}
	if m.Status > AnswerMintOnly {
		return b, wrap("answer: status", ErrUnknownReason)
	}
	if len(m.Ack) > MaxAckLen {
		return b, wrap("answer: ack", ErrTooLong)
	}
	b = append(b, byte(m.Status))
	return append(b, m.Ack...), nil
}

// UnmarshalBinary parses a message-2 payload. It rejects a payload shorter
// than the cookie, an unknown status and an ack over MaxAckLen. On error
// m is unchanged.
func (m *Answer) UnmarshalBinary(data []byte) error {
	if len(data) > CookieLen+1+MaxAckLen {
		return wrap("answer", ErrTooLong)
	}
	r := newReader(data)
	cookie := r.bytes(CookieLen) // §4.1 cookie
	if !r.ok {
		return wrap("answer: cookie", ErrShort)
	}
	if len(r.b) == 0 {
		m.Cookie, m.Paid, m.Status, m.Ack = [CookieLen]byte(cookie), false, 0, nil
		return nil
	}
	status := AnswerStatus(r.u8()) // §4.1 status
	ack := r.rest()                // §4.1 ack
	if status > AnswerMintOnly {
		return wrap("answer: status", ErrUnknownReason)
	}
	m.Cookie, m.Paid, m.Status, m.Ack = [CookieLen]byte(cookie), true, status, ack
	return nil
}
