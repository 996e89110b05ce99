package cell

// Sizes of the wire format (PROTOCOL.md §2, §3.1, §5).
const (
	// Size is the length of every link cell (§2).
	Size = 4096
	// HeaderLen is circ_id(4) | command(1) (§2).
	HeaderLen = 5
	// BodyLen is the length of a cell body.
	BodyLen = Size - HeaderLen
	// CookieLen is the length of a hop's session cookie (§4.3).
	CookieLen = 8
	// TagLen is the AES-GCM authentication tag length (§3).
	TagLen = 16
	// LayerOverhead is what each onion layer adds: cookie, kind and tag (§3.1).
	LayerOverhead = CookieLen + 1 + TagLen
	// MaxHops is the longest circuit; CREATE depth is 1..MaxHops (§2.1).
	MaxHops = 8
	// RelayHeaderLen is command(1) | stream_id(2) | length(2) (§5).
	RelayHeaderLen = 5
)

// OnionLen returns L(depth) = BodyLen − LayerOverhead·(depth−1), the number of
// bytes at the front of a RELAY body that form the onion hop depth (1-based)
// receives (§3.1). It returns 0 if depth is outside 1..MaxHops.
func OnionLen(depth int) int {
	if depth < 1 || depth > MaxHops {
		return 0
	}
	return BodyLen - LayerOverhead*(depth-1)
}

// PayloadLen returns OnionLen(depth) − LayerOverhead, the length of the
// relay-message region that hop depth opens (§3.1, §5). It returns 0 if depth
// is outside 1..MaxHops.
func PayloadLen(depth int) int {
	if depth < 1 || depth > MaxHops {
		return 0
	}
	return OnionLen(depth) - LayerOverhead
}

// MaxData returns PayloadLen(depth) − RelayHeaderLen, the most DATA bytes (and
// the longest relay-message body) one cell to or from hop depth can carry. It
// returns 0 if depth is outside 1..MaxHops.
func MaxData(depth int) int {
	if depth < 1 || depth > MaxHops {
		return 0
	}
	return PayloadLen(depth) - RelayHeaderLen
}
