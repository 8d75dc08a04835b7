//go:build race

package main

// raceEnabled reports whether the tests run with the race detector, so
// that the end-to-end tests build the binary with it too.
const raceEnabled = true
