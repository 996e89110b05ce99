// Package lnfake is an in-memory stand-in for two LND nodes and the
// Lightning network between them, for voucher unit tests: the mint creates
// invoices on it, the wallet decodes and pays them, and settlement is
// immediate. Failures and tampering are injected through its fields. Tests
// against real LND live elsewhere.
package lnfake
