//go:build race

package circuit

// raceEnabled is true when tests run under the race detector.
const raceEnabled = true
