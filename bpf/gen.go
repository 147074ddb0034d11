package bpf

// The committed steer_bpfe{l,b}.{go,o} come from this line; bpf2go is pinned
// as a tool in go.mod. bpf/check-generated verifies they match steer.c.
//go:generate go tool bpf2go -tags linux -cflags "-mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" steer steer.c
