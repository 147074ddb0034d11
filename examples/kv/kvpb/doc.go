// Package kvpb holds the messages (kv.pb.go, by protoc-gen-go) and the typed
// server and client (kv_zerohop.pb.go, by protoc-gen-zerohop) of kv.proto,
// and the service's application errors. Regenerate with go generate.
package kvpb

//go:generate sh -c "protoc --go_out=. --go_opt=paths=source_relative --zerohop_out=. --zerohop_opt=paths=source_relative kv.proto"
