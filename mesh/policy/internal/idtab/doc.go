// Package idtab maps method ids (uint32, never 0) to small integers with an
// open-addressing table: one multiply, one shift and usually one probe, no
// allocation. Tables are built once and then only read, so any number of
// goroutines may call Get concurrently.
package idtab
