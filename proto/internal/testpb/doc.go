// Package testpb holds the Go code protoc-gen-go generated from
// proto/testdata/testmsg.proto: the reference message that tests and fuzz
// targets marshal with google.golang.org/protobuf and read back with
// proto.Fields. It is for tests only; regenerate it with the command in the
// .proto file.
package testpb
