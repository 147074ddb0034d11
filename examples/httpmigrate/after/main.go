// Command after is the migration example's service moved to zerohop: the
// greeting is a GWIR method (greeter.Greeter/Greet: field 1 name in, field
// 1 greeting out), served from AF_XDP or io_uring sockets; the health check
// stays on net/http beside it, where load balancers and kubelets look for
// it, and turns 503 as soon as the server starts draining.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	gwir "github.com/zerohop/zerohop/proto"
	zrt "github.com/zerohop/zerohop/runtime"
)

// GreetMethod is the method name; a caller uses it with Client.Call.
const GreetMethod = "greeter.Greeter/Greet"

// greet reads the name in place and writes the greeting straight into the
// reply: no allocation, and nothing of the request kept past the return.
func greet(req *zrt.Request, resp *zrt.Response) {
	var buf [512]byte
	out := append(buf[:0], "hello, "...)
	fields := req.Fields()
	for fields.Next() {
		if f := fields.Field(); f.Num() == 1 && f.Type() == gwir.BytesType {
			out = append(out, f.Bytes()...)
		}
	}
	if err := fields.Err(); err != nil {
		resp.Error(gwir.StatusBadFrame, err.Error())
		return
	}
	resp.AppendBytes(1, out)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:7300", "IP:PORT zerohop serves on")
	httpAddr := flag.String("http", "127.0.0.1:8080", "IP:PORT of the HTTP health endpoint")
	flag.Parse()
	srv, err := zrt.Listen("udp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	srv.Handle(GreetMethod, greet)

	var draining atomic.Bool
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if draining.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "serving", srv.Backend())
	})
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		log.Fatal(err)
	}
	health := &http.Server{Handler: mux}
	go health.Serve(ln)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		draining.Store(true) // before Serve drains: the balancer stops sending first
	}()
	log.Printf("serving %s on %v (%v backend), health on http://%v/healthz", GreetMethod, srv.Addr(), srv.Backend(), ln.Addr())
	err = srv.Serve(ctx)
	health.Shutdown(context.Background())
	if err != nil {
		log.Fatal(err)
	}
}
