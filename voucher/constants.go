package voucher

// Sizes and caps. Every one of them bounds something a peer controls.
const (
	// ProtocolID is the libp2p protocol of the mint (docs/VOUCHERS.md §3).
	ProtocolID = "/co-infuse/mint/1"

	// SecretSize is the length of a voucher's secret message.
	SecretSize = 32
	// KeysetIDSize is the length of a keyset id.
	KeysetIDSize = 8
	// QuoteIDSize is the length of a quote id.
	QuoteIDSize = 16
	// PayeeSize is the length of a Lightning node public key (compressed).
	PayeeSize = 33

	// MinModulusBytes and MaxModulusBytes bound RSA moduli: 2048 to 4096 bits.
	MinModulusBytes = 256
	MaxModulusBytes = 512
	// PublicExponent is the only RSA public exponent accepted.
	PublicExponent = 65537

	// MaxDenomExp is the largest denomination exponent: 2^20 sats.
	MaxDenomExp = 20
	// MaxKeysPerKeyset caps a keyset's keys (one per exponent 0..MaxDenomExp).
	MaxKeysPerKeyset = MaxDenomExp + 1

	// MaxVouchersPerMint caps the blinded messages in one mint request.
	MaxVouchersPerMint = 64
	// MaxVouchersPerBatch caps the vouchers in one redemption batch (a
	// TOPUP payload); 12 vouchers of 2048-bit keys fit one relay message.
	MaxVouchersPerBatch = 12
	// MaxPayReqLen caps a BOLT 11 payment request in a quote (LND's own
	// decoder limit).
	MaxPayReqLen = 7089
	// MaxMessageSize caps one mint protocol message (the length prefix).
	MaxMessageSize = 1 + QuoteIDSize + KeysetIDSize + 1 + MaxVouchersPerMint*(1+2+MaxModulusBytes)
	// MaxKeysetSize caps an encoded keyset.
	MaxKeysetSize = 1 + 3*8 + 1 + MaxKeysPerKeyset*(1+4+2+MaxModulusBytes)
)
