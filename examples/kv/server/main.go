// Command server serves the kv.KV service (../kvpb/kv.proto) from memory.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/zerohop/zerohop/examples/kv/kvpb"
	zrt "github.com/zerohop/zerohop/runtime"
	"github.com/zerohop/zerohop/typed"
)

type store struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *store) Get(_ context.Context, req *kvpb.GetRequest) (*kvpb.GetReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[req.Key]
	if !ok {
		return nil, typed.Errorf(kvpb.ErrNotFound.Status, "no key %q", req.Key)
	}
	return &kvpb.GetReply{Value: v}, nil
}

func (s *store) Put(_ context.Context, req *kvpb.PutRequest) (*kvpb.PutReply, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, replaced := s.m[req.Key]
	s.m[req.Key] = req.Value // Unmarshal copied it out of the frame: ours to keep
	return &kvpb.PutReply{Replaced: replaced}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7100", "IP:PORT to serve on")
	flag.Parse()
	srv, err := zrt.Listen("udp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	kvpb.RegisterKVServer(srv, &store{m: map[string][]byte{}})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Printf("serving kv.KV on %v (%v backend)", srv.Addr(), srv.Backend())
	if err := srv.Serve(ctx); err != nil {
		log.Fatal(err)
	}
}
