// Package torproc runs Debian's tor as a managed child process: it writes
// a torrc into its own data directory (SocksPort and ControlPort on
// 127.0.0.1 with kernel-chosen ports, cookie authentication, the cookie
// file 0600, __OwningControllerProcess set to our pid so tor exits with
// us), starts tor, authenticates on its control port, and supervises it:
// a tor that dies is restarted with backoff and the onion services added
// through AddOnion are added again.
//
// On top of the control port it offers what co-infuse needs of tor:
// bootstrap progress (WaitBootstrapped, Status), a SOCKS5 client that
// keeps Tor's extended reply codes (DialSocks, SocksError), and onion
// services with a caller's key (AddOnion, AddOnionNew, DelOnion).
//
// It is plumbing: it imports no domain package. Which tor to run and
// which extra torrc lines to add (a private test network, see
// internal/tornet) are the caller's; so is deciding what to publish.
package torproc
