package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/zerohop/zerohop/proto"
	"github.com/zerohop/zerohop/runtime"
	"google.golang.org/protobuf/encoding/protowire"
)

func init() {
	register(command{name: "call", summary: "call a method on a zerohop server and print the reply", run: runCall})
}

func runCall(args []string) int { return callCommand(os.Stdout, os.Stderr, args) }

const callUsage = `usage: zerohop call --addr IP:PORT METHOD [--hex PAYLOAD | --field N=VALUE ...] [--timeout D]

Sends one GWIR request for METHOD ("pkg.Service/Method") and prints the
reply's status and payload fields (number, wire type, value).

A --field VALUE is an integer (sent as a varint; negative ones as int64),
or str:TEXT, hex:BYTES, fixed32:N, fixed64:N; anything else is sent as
text. Fields are sent in the order given.

Exit status: 0 for an OK reply, 1 for another status or no reply, 2 for
bad flags.
`

// fieldFlags collects repeated --field flags.
type fieldFlags []string

func (f *fieldFlags) String() string     { return strings.Join(*f, ",") }
func (f *fieldFlags) Set(v string) error { *f = append(*f, v); return nil }

func callCommand(out, errOut io.Writer, args []string) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	fs.SetOutput(errOut)
	addr := fs.String("addr", "", "server address IP:PORT (required)")
	hexPayload := fs.String("hex", "", "raw payload in hex (protobuf wire format)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	var fields fieldFlags
	fs.Var(&fields, "field", "payload field N=VALUE (repeatable)")
	fs.Usage = func() {
		fmt.Fprint(errOut, callUsage)
		fs.PrintDefaults()
	}
	// Flags may come before and after METHOD.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return 0
			}
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	bad := func(format string, a ...any) int {
		fmt.Fprintf(errOut, "zerohop call: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	switch {
	case *addr == "":
		return bad("--addr is required")
	case len(positional) != 1:
		return bad("want exactly one METHOD, got %d arguments", len(positional))
	case *hexPayload != "" && len(fields) > 0:
		return bad("--hex and --field exclude each other")
	case *timeout <= 0:
		return bad("--timeout must be positive")
	}
	method := positional[0]
	var payload []byte
	if *hexPayload != "" {
		p, err := hex.DecodeString(*hexPayload)
		if err != nil {
			return bad("--hex: %v", err)
		}
		payload = p
	}
	for _, f := range fields {
		p, err := appendFieldFlag(payload, f)
		if err != nil {
			return bad("--field %s: %v", f, err)
		}
		payload = p
	}

	client, err := runtime.Dial("udp", *addr)
	if err != nil {
		fmt.Fprintln(errOut, "zerohop call:", err)
		return 1
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	reply, err := client.Call(ctx, method, payload, nil)
	var se *runtime.StatusError
	if err != nil && !errors.As(err, &se) {
		fmt.Fprintln(errOut, "zerohop call:", err)
		return 1
	}
	if se != nil && se.Message != "" {
		fmt.Fprintf(out, "status %v: %s\n", reply.Status, se.Message)
	} else {
		fmt.Fprintf(out, "status %v\n", reply.Status)
	}
	printFields(out, reply.Payload)
	if reply.Status != proto.StatusOK {
		return 1
	}
	return 0
}

// appendFieldFlag appends the field described by "N=VALUE" to payload.
func appendFieldFlag(payload []byte, spec string) ([]byte, error) {
	numStr, value, ok := strings.Cut(spec, "=")
	if !ok {
		return nil, errors.New("want N=VALUE")
	}
	n, err := strconv.ParseUint(numStr, 10, 32)
	if err != nil || n < 1 || n > uint64(protowire.MaxValidNumber) {
		return nil, fmt.Errorf("field number %q not in 1..%d", numStr, protowire.MaxValidNumber)
	}
	num := protowire.Number(n)
	if num >= protowire.FirstReservedNumber && num <= protowire.LastReservedNumber {
		return nil, fmt.Errorf("field number %d is reserved by protobuf", num)
	}
	kind, rest, hasKind := strings.Cut(value, ":")
	if hasKind {
		switch kind {
		case "str":
			return protowire.AppendString(protowire.AppendTag(payload, num, protowire.BytesType), rest), nil
		case "hex":
			b, err := hex.DecodeString(rest)
			if err != nil {
				return nil, err
			}
			return protowire.AppendBytes(protowire.AppendTag(payload, num, protowire.BytesType), b), nil
		case "fixed32":
			v, err := parseInt(rest, 32)
			if err != nil {
				return nil, err
			}
			return protowire.AppendFixed32(protowire.AppendTag(payload, num, protowire.Fixed32Type), uint32(v)), nil
		case "fixed64":
			v, err := parseInt(rest, 64)
			if err != nil {
				return nil, err
			}
			return protowire.AppendFixed64(protowire.AppendTag(payload, num, protowire.Fixed64Type), v), nil
		}
	}
	if v, err := parseInt(value, 64); err == nil {
		return protowire.AppendVarint(protowire.AppendTag(payload, num, protowire.VarintType), v), nil
	}
	return protowire.AppendString(protowire.AppendTag(payload, num, protowire.BytesType), value), nil
}

// parseInt reads a signed or unsigned integer of the given bit size, as
// its two's complement bits.
func parseInt(s string, bitSize int) (uint64, error) {
	if u, err := strconv.ParseUint(s, 0, bitSize); err == nil {
		return u, nil
	}
	i, err := strconv.ParseInt(s, 0, bitSize)
	if err != nil {
		return 0, fmt.Errorf("%q is not a %d-bit integer", s, bitSize)
	}
	if bitSize == 32 {
		return uint64(uint32(int32(i))), nil
	}
	return uint64(i), nil
}

// printFields prints one line per payload field: number, wire type, value.
func printFields(out io.Writer, payload []byte) {
	it := proto.NewFields(payload)
	for it.Next() {
		f := it.Field()
		switch f.Type() {
		case proto.VarintType:
			v := f.Uint64()
			if v > math.MaxInt64 {
				fmt.Fprintf(out, "field %d varint %d (int64 %d)\n", f.Num(), v, int64(v))
			} else {
				fmt.Fprintf(out, "field %d varint %d\n", f.Num(), v)
			}
		case proto.Fixed32Type:
			fmt.Fprintf(out, "field %d fixed32 %d (float %g)\n", f.Num(), f.Uint32(), f.Float32())
		case proto.Fixed64Type:
			fmt.Fprintf(out, "field %d fixed64 %d (double %g)\n", f.Num(), f.Uint64(), f.Float64())
		case proto.BytesType:
			fmt.Fprintf(out, "field %d bytes %s\n", f.Num(), showBytes(f.Bytes()))
		}
	}
	if fe, bad := it.Malformed(); bad {
		fmt.Fprintf(out, "malformed payload at offset %d: %v; the rest in hex: %x\n", fe.Offset, &fe, payload[fe.Offset:])
	}
}

// showBytes quotes printable UTF-8 text and shows anything else in hex.
func showBytes(b []byte) string {
	if utf8.Valid(b) && strings.IndexFunc(string(b), func(r rune) bool { return !unicode.IsPrint(r) && r != '\n' && r != '\t' }) < 0 {
		return strconv.Quote(string(b))
	}
	return hex.EncodeToString(b)
}
