// Package dockertest holds the tests of docker/: the image built offline
// (docker/build-image.sh), what it carries and how it fails on bad input,
// a network of containers from docker/compose.devnet.yml on three networks
// with distinct /16 subnets (downloads through 3-hop circuits, an exit
// killed mid-download, a relay partitioned), and the Umbrel and Start9
// packages' manifests checked against the image and the config.
//
// The container tests need a running Docker engine and docker-compose (or
// `docker compose`); without them they skip, saying why. scripts/test.sh
// starts the engine and runs them. The manifest tests need neither.
// Everything a test creates (containers, networks, volumes, the test image)
// is removed in t.Cleanup; the builder base co-infuse-builder:local is
// kept, as it takes minutes to make.
package dockertest
