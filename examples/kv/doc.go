// Package kv is the key-value example: kvpb/kv.proto defines kv.KV (Get,
// Put), protoc-gen-go and protoc-gen-zerohop generate kvpb, server/ serves
// it from memory and client/ calls it. README.md shows the commands. This
// package holds no code, only the test that builds and runs the two
// commands end to end.
package kv
