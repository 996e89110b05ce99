// Package testkeys hands voucher tests RSA keys generated once per test
// binary, since generating a 2048-bit key takes a noticeable fraction of a
// second and a mint needs one per denomination. Test-only: the keys are
// reused in turn, which no real mint may do.
package testkeys

import (
	"crypto/rand"
	"crypto/rsa"
	"sync"
)

// Pool generates N RSA-2048 keys on first use and hands them out in turn.
type Pool struct {
	N int // keys to generate

	once sync.Once
	err  error
	keys []*rsa.PrivateKey // written once under once

	mu   sync.Mutex
	next int // guarded by mu
}

// Gen has the shape of mint.Config.KeyGen; bits is ignored (always 2048).
func (p *Pool) Gen(bits int) (*rsa.PrivateKey, error) {
	p.once.Do(func() {
		for range max(p.N, 1) {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				p.err = err
				return
			}
			p.keys = append(p.keys, k)
		}
	})
	if p.err != nil {
		return nil, p.err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keys[p.next%len(p.keys)]
	p.next++
	return k, nil
}
