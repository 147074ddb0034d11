package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"

	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	const usage = "usage: protoc --zerohop_out=DIR [--zerohop_opt=handlers=loop|blocking] FILE.proto\n\n" +
		"protoc-gen-zerohop is a protoc plugin: protoc runs it, with the request on stdin.\n" +
		"It writes FILE_zerohop.pb.go (typed servers and clients) beside protoc-gen-go's output."
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-h", "--help":
			fmt.Println(usage)
			os.Exit(0)
		case "--version":
			version := "(devel)"
			if bi, ok := debug.ReadBuildInfo(); ok {
				version = bi.Main.Version
			}
			fmt.Println("protoc-gen-zerohop", version)
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "protoc-gen-zerohop: unexpected argument %q\n%s\n", os.Args[1], usage)
		os.Exit(2)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "protoc-gen-zerohop: reading the request:", err)
		os.Exit(1)
	}
	req := &pluginpb.CodeGeneratorRequest{}
	if err := proto.Unmarshal(in, req); err != nil {
		fmt.Fprintln(os.Stderr, "protoc-gen-zerohop: decoding the request:", err)
		os.Exit(1)
	}
	out, err := proto.Marshal(run(req))
	if err != nil {
		fmt.Fprintln(os.Stderr, "protoc-gen-zerohop: encoding the response:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		fmt.Fprintln(os.Stderr, "protoc-gen-zerohop: writing the response:", err)
		os.Exit(1)
	}
}

// run answers one request; errors travel in the response, as protoc wants.
func run(req *pluginpb.CodeGeneratorRequest) *pluginpb.CodeGeneratorResponse {
	var flags flag.FlagSet
	var p params
	flags.StringVar(&p.handlers, "handlers", handlersLoop, "where handlers run unless a directive says otherwise: loop or blocking")
	set := func(name, value string) error {
		if flags.Lookup(name) == nil {
			return fmt.Errorf("unknown parameter %s=%s: this plugin takes handlers=loop|blocking (besides protogen's paths= and module=)", name, value)
		}
		return flags.Set(name, value)
	}
	plugin, err := protogen.Options{ParamFunc: set}.New(req)
	if err != nil {
		return &pluginpb.CodeGeneratorResponse{Error: proto.String("protoc-gen-zerohop: " + err.Error())}
	}
	plugin.SupportedFeatures = uint64(pluginpb.CodeGeneratorResponse_FEATURE_PROTO3_OPTIONAL)
	if err := generate(plugin, p); err != nil {
		plugin.Error(err)
	}
	return plugin.Response()
}
