package discovery

import "errors"

// Advert rejections. Every error returned for a bad advert wraps exactly one
// of these, so callers (and tests) can tell the reason with errors.Is. They are
// peer faults, never our bugs: they are logged at debug level only.
var (
	// ErrMalformed: the bytes do not follow the encoding in DISCOVERY.md §3
	// (truncated, trailing bytes, non-canonical order, bad field).
	ErrMalformed = errors.New("discovery: malformed advert")
	// ErrTooLarge: the advert or one of its fields exceeds a size cap.
	ErrTooLarge = errors.New("discovery: advert too large")
	// ErrBadSignature: the signature does not verify under the embedded key.
	ErrBadSignature = errors.New("discovery: bad advert signature")
	// ErrKeyMismatch: the embedded public key does not hash to the advert's
	// peer ID, or the advert was served by a peer other than the one it names.
	ErrKeyMismatch = errors.New("discovery: advert key does not match peer")
	// ErrExpired: the advert's expiry has passed.
	ErrExpired = errors.New("discovery: advert expired")
	// ErrTooFarAhead: the advert's expiry is further in the future than
	// MaxAdvertLifetime allows (an attempt to pin a stale record).
	ErrTooFarAhead = errors.New("discovery: advert expiry too far ahead")
	// ErrReplay: the advert's sequence number is lower than one already seen
	// for that peer, or equal with different content.
	ErrReplay = errors.New("discovery: replayed or stale advert sequence")
	// ErrNoAdvert: the peer answered but has no advert published.
	ErrNoAdvert = errors.New("discovery: peer has no advert")
	// ErrEquivocation: the node signed two different adverts with the same
	// sequence number, i.e. it shows different adverts to different
	// clients (CrossCheck).
	ErrEquivocation = errors.New("discovery: node shows different adverts to different clients")
)

// Service-level errors.
var (
	// ErrClosed: the service was closed.
	ErrClosed = errors.New("discovery: service closed")
	// ErrNotStarted: a call that needs the DHT was made before Start.
	ErrNotStarted = errors.New("discovery: service not started")
	// ErrNoPath: not enough usable adverts to build the requested path.
	ErrNoPath = errors.New("discovery: no usable path")
	// ErrBadConfig: a Config or PathRequest field is invalid; the wrapped
	// message names the field.
	ErrBadConfig = errors.New("discovery: bad config")
)
