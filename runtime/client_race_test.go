//go:build race

package runtime

// raceEnabled: the race detector makes sync.Pool drop objects at random and
// adds allocations of its own, so allocation pins do not hold.
const raceEnabled = true
