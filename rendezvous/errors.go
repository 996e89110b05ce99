package rendezvous

import "errors"

// Client-side failures of Dial, one per Tor extended SOCKS reply code
// (socks-extensions.txt "Extended error codes"); proxy maps them.
var (
	// ErrDescriptorNotFound: no HSDir holds a valid descriptor for the
	// address in this period: none is in view or announces the index, or
	// more than half of those asked in a round said they have none or
	// served one that does not verify against the address (SOCKS 0xF0).
	// When the ring had HSDirs to ask, only its rounds count: announcers
	// found in the DHT (anyone can announce) cannot turn a ring that
	// could not be asked into this. Only this makes node try a Tor
	// gateway.
	ErrDescriptorNotFound = errors.New("rendezvous: onion service descriptor not found")
	// ErrDescriptorUnavailable: HSDirs were found but most of those asked
	// could not be: circuits to them failed or they did not answer in
	// time (SOCKS 0xF0 too). It is not
	// ErrDescriptorNotFound: asking a Tor gateway would name a co-infuse
	// service to it.
	ErrDescriptorUnavailable = errors.New("rendezvous: onion service descriptor unavailable (its HSDirs could not be asked)")
	// ErrIntroFailed: every introduction point refused or failed (0xF2).
	ErrIntroFailed = errors.New("rendezvous: introduction failed")
	// ErrRendezvousFailed: the rendezvous point or the service's handshake
	// failed (0xF3).
	ErrRendezvousFailed = errors.New("rendezvous: rendezvous failed")
	// ErrBadAddress: the host is not a well-formed v3 onion address (0xF6).
	ErrBadAddress = errors.New("rendezvous: invalid onion address")
	// ErrIntroTimeout: the service did not come to the rendezvous point in
	// time after an accepted introduction (0xF7).
	ErrIntroTimeout = errors.New("rendezvous: introduction timed out")
)

// Descriptor and protocol errors (peer faults), matched with errors.Is.
var (
	// ErrBadDescriptor: a descriptor failed to parse, verify or decrypt.
	ErrBadDescriptor = errors.New("rendezvous: bad descriptor")
	// ErrWrongPeriod: a descriptor is for a time period other than the
	// ones the receiver accepts now.
	ErrWrongPeriod = errors.New("rendezvous: descriptor for the wrong time period")
	// ErrBadIntroduce: an introduction failed to parse or decrypt.
	ErrBadIntroduce = errors.New("rendezvous: bad introduction")
	// ErrBadRendezvousPoint: an introduction names a rendezvous point the
	// service's discovery does not know as a fresh rendezvous-role node.
	ErrBadRendezvousPoint = errors.New("rendezvous: unknown rendezvous point")
	// ErrReplay: an introduction or rendezvous cookie seen before.
	ErrReplay = errors.New("rendezvous: replayed introduction or cookie")
	// ErrRateLimited: an introduction point refused an introduction over
	// its rate.
	ErrRateLimited = errors.New("rendezvous: introduction rate limited")
	// ErrUnknownService: Unpublish of an address not published here.
	ErrUnknownService = errors.New("rendezvous: no such onion service")
	// ErrClosed: the Manager is closed.
	ErrClosed = errors.New("rendezvous: closed")
)
