package cell

// codecError is the type of every sentinel below. Each one also matches
// ErrMalformed under errors.Is, so callers can treat any codec failure as a
// protocol violation without listing the sentinels.
type codecError struct{ msg string }

func (e *codecError) Error() string { return e.msg }

// Is reports whether target is ErrMalformed; identity is handled by errors.Is.
func (e *codecError) Is(target error) bool { return target == ErrMalformed }

// ErrMalformed matches every error this package returns. When decoding peer
// input it means the peer broke the protocol (DESTROY reason 1, END 8); when
// encoding, the caller passed a value that cannot go on the wire.
var ErrMalformed error = &codecError{"cell: malformed"}

// Sentinel errors. Returned errors wrap exactly one of these (and through it
// ErrMalformed); match them with errors.Is.
var (
	// ErrShort: the input ends before a field it announces, or a length that
	// must be at least 1 is 0.
	ErrShort error = &codecError{"cell: input too short"}
	// ErrTooLong: a field or message exceeds its limit or its buffer.
	ErrTooLong error = &codecError{"cell: field too long"}
	// ErrBadLength: a cell body is not exactly BodyLen bytes.
	ErrBadLength error = &codecError{"cell: wrong body length"}
	// ErrBadPadding: bytes that must be zero are not (§2, §5).
	ErrBadPadding error = &codecError{"cell: non-zero padding"}
	// ErrTrailing: a relay-message body has bytes after its last field.
	ErrTrailing error = &codecError{"cell: trailing bytes"}
	// ErrUnknownCommand: an unknown relay command (§5).
	ErrUnknownCommand error = &codecError{"cell: unknown command"}
	// ErrBadStream: a stream id not allowed for the relay command (§5).
	ErrBadStream error = &codecError{"cell: stream id not allowed for command"}
	// ErrBadDepth: a CREATE depth outside 1..MaxHops (§2.1).
	ErrBadDepth error = &codecError{"cell: bad depth"}
	// ErrUnknownReason: an unknown DESTROY (§2.3) or END (§5.1) reason.
	ErrUnknownReason error = &codecError{"cell: unknown reason"}
	// ErrBadService: an unknown BEGIN service (§5).
	ErrBadService error = &codecError{"cell: unknown service"}
	// ErrBadTarget: a target that does not follow the grammar of Target
	// (ParseTarget, NewTarget), or a BEGIN target that is not in canonical
	// form or is the zero Target (§5 BEGIN).
	ErrBadTarget error = &codecError{"cell: bad target"}
	// ErrBadHost: a RESOLVE host that is empty, too long or not printable
	// ASCII (§5), or a host CheckHost refuses.
	ErrBadHost error = &codecError{"cell: bad host"}
	// ErrBadAddr: an unknown atyp, or an address that cannot be encoded
	// (zoned, or missing where one is required) (§5).
	ErrBadAddr error = &codecError{"cell: bad address"}
	// ErrBadCode: an END tor-socks whose socks_code is missing from the
	// value or not a SOCKS5 failure code (ValidSocksCode), or a SocksCode
	// given with another reason (§5.1).
	ErrBadCode error = &codecError{"cell: bad socks code"}
	// ErrTooMany: more EXTEND addresses than MaxExtendAddrs.
	ErrTooMany error = &codecError{"cell: too many items"}
)
