//go:build codeps

// Package deps pins the project's chosen dependencies before code uses them.
package deps

import (
	_ "github.com/btcsuite/btcd/rpcclient"
	_ "github.com/cloudflare/circl/blindsign/blindrsa"
	_ "github.com/libp2p/go-libp2p"
	_ "github.com/libp2p/go-libp2p-kad-dht"
	_ "github.com/lightningnetwork/lnd/lnrpc"
	_ "github.com/lightningnetwork/lnd/lnrpc/routerrpc"
	_ "github.com/things-go/go-socks5"
	_ "go.etcd.io/bbolt"
	_ "go.uber.org/goleak"
	_ "golang.org/x/crypto/chacha20poly1305"
	_ "gopkg.in/yaml.v3"
)
