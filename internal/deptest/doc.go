// Package deptest holds the module's one dependency test (deptest_test.go):
// a table of the module packages each package may import, and the rules of
// STYLE.md §1 that no single package's test can see (the one importer of
// lnrpc, of kad-dht, of internal/regtest; codecs on the standard library
// only). It has no code of its own; shaped after tailscale's
// tstest/deptest.
package deptest
