// Command client calls the kv.KV service:
//
//	client [--addr IP:PORT] put KEY VALUE
//	client [--addr IP:PORT] get KEY
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/zerohop/zerohop/examples/kv/kvpb"
	zrt "github.com/zerohop/zerohop/runtime"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7100", "IP:PORT of the server")
	flag.Parse()
	conn, err := zrt.Dial("udp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	kv := kvpb.NewKVClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	switch args := flag.Args(); {
	case len(args) == 3 && args[0] == "put":
		rep, err := kv.Put(ctx, &kvpb.PutRequest{Key: args[1], Value: []byte(args[2])})
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("replaced:", rep.Replaced)
	case len(args) == 2 && args[0] == "get":
		rep, err := kv.Get(ctx, &kvpb.GetRequest{Key: args[1]})
		if errors.Is(err, kvpb.ErrNotFound) {
			fmt.Println("not found:", err)
			os.Exit(1)
		} else if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s\n", rep.Value)
	default:
		log.Fatal("usage: client [--addr IP:PORT] put KEY VALUE | get KEY")
	}
}
