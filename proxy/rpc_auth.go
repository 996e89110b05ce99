package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strings"
	"sync"
	"time"
)

// wwwAuthenticate is the challenge bitcoind sends with every 401
// (src/httprpc.cpp WWW_AUTH_HEADER_DATA).
const wwwAuthenticate = `Basic realm="jsonrpc"`

// rpcAuth holds the accepted "user:password" strings as SHA-256 digests,
// so comparing takes the same time whatever the length of the guess.
type rpcAuth struct {
	accepted [][sha256.Size]byte // immutable after newRPCAuth
}

func newRPCAuth(userPass ...string) rpcAuth {
	var a rpcAuth
	for _, up := range userPass {
		if up != "" {
			a.accepted = append(a.accepted, sha256.Sum256([]byte(up)))
		}
	}
	return a
}

// check reports whether header, an Authorization header value, carries
// accepted Basic credentials. Like bitcoind it wants the exact prefix
// "Basic ", trims the rest and compares the decoded "user:password" as a
// whole. Every accepted secret is compared, in constant time.
func (a rpcAuth) check(header string) bool {
	enc, ok := strings.CutPrefix(header, "Basic ")
	if !ok {
		return false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return false
	}
	got := sha256.Sum256(dec)
	match := 0
	for i := range a.accepted {
		match |= subtle.ConstantTimeCompare(got[:], a.accepted[i][:])
	}
	return match == 1
}

// failLimiter is a token bucket over failed authentications: rate tokens
// a second, at most rate in the bucket. A failed attempt takes a token,
// waiting for one if the bucket is empty, before its 401 goes out; so all
// clients together learn at most about rate wrong guesses a second, while
// requests with good credentials never wait. This replaces bitcoind's
// fixed 250 ms sleep per bad attempt.
type failLimiter struct {
	rate float64
	now  func() time.Time

	mu     sync.Mutex
	tokens float64   // guarded by mu; may go negative (reservations)
	last   time.Time // guarded by mu
}

func newFailLimiter(perSecond int) *failLimiter {
	return &failLimiter{rate: float64(perSecond), tokens: float64(perSecond), now: time.Now}
}

// reserve takes a token and returns how long to wait before it is due.
func (l *failLimiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if !l.last.IsZero() {
		l.tokens = min(l.rate, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// wait takes a token, waiting until it is due or ctx ends.
func (l *failLimiter) wait(ctx context.Context) error {
	d := l.reserve()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		// Give the token back: a client that hung up learnt nothing.
		l.mu.Lock()
		l.tokens++
		l.mu.Unlock()
		return ctx.Err()
	}
}
