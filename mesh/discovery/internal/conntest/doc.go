// Package conntest is the consumer side of a resolver in tests: a
// runtime.ResolverConn that records what it is given and lets a test wait,
// bounded, until what it holds satisfies a condition. It stands in for the
// runtime's Client, not for any source.
package conntest
