// Package glob matches names against patterns in which '*' stands for any
// run of characters (including none). Patterns are compiled once; matching
// neither allocates nor backtracks more than the greedy leftmost search
// needs, so it can run on the request path.
package glob
