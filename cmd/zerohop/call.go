package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

func runCall(args []string) int { return callCommand(context.Background(), os.Stdout, os.Stderr, args) }

const callUsage = `usage: zerohop call (--addr IP:PORT | --service NAME (--etcd ENDPOINTS | --node-table | --endpoints IP:PORT,…)) METHOD [--hex PAYLOAD | --field N[:TYPE]=VALUE ...] [--timeout D]
                    [--identity DIR [--allow SPIFFE_GLOB,...] [--handshake-port N]]

Sends one GWIR request for METHOD ("pkg.Service/Method"), retransmitting
until a reply or --timeout, and prints the reply's status and payload
fields (number, wire type, value). With --service the request goes to an
endpoint of the service that discovery names, picked by p2c among the
healthy ones and failed over to another if it does not answer.

A --field is N=INTEGER (a varint; a negative one as int64), or
N:TYPE=VALUE with a protobuf scalar type, which says how VALUE is read
and encoded:
  int32 int64 uint32 uint64 sint32 sint64 bool enum   varint (sint: zigzag)
  fixed32 sfixed32 float                               4 bytes
  fixed64 sfixed64 double                              8 bytes
  string                                               UTF-8 text
  bytes                                                hex digits (00ff…)
e.g. --field 1=42 --field 2:string=hello --field 6:double=3.14. A value
that does not parse as its type is refused. Fields are sent in the order
given.

With --identity the call is sealed: a handshake proves both sides'
SPIFFE identities first (docs/identity.md).

Exit status: 0 for an OK reply, 1 for another status or no reply, 2 for
bad flags, 128+N when interrupted by signal N.`

// fieldFlags collects repeated --field flags.
type fieldFlags []string

func (f *fieldFlags) String() string     { return strings.Join(*f, ",") }
func (f *fieldFlags) Set(v string) error { *f = append(*f, v); return nil }

func callCommand(ctx context.Context, out, errOut io.Writer, args []string) int {
	fs := newFlags("call", callUsage)
	addr := fs.String("addr", "", "server address IP:PORT (required)")
	hexPayload := fs.String("hex", "", "raw payload in hex (protobuf wire format)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	var fields fieldFlags
	fs.Var(&fields, "field", "payload field N=INTEGER or N:TYPE=VALUE (repeatable)")
	idf := addIdentityFlags(fs.FlagSet, false) // --identity, --allow, --handshake-port (sealing.go)
	sf := addServiceFlags(fs.FlagSet)          // --service, --etcd, --node-table, --endpoints (callservice.go)
	// Flags may come before and after METHOD.
	var positional []string
	for {
		if code, done := fs.parse(args, out, errOut); done {
			return code
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if err := sf.check(*addr); err != nil {
		return fs.usageError(errOut, "%v", err)
	}
	switch {
	case *addr == "" && sf.service == "":
		return fs.usageError(errOut, "--addr is required: give the server's IP:PORT (or --service NAME to call a service by name)")
	case len(positional) != 1:
		return fs.usageError(errOut, "want exactly one METHOD (\"pkg.Service/Method\"), got %d arguments", len(positional))
	case *hexPayload != "" && len(fields) > 0:
		return fs.usageError(errOut, "--hex and --field exclude each other: give the payload one way")
	case *timeout <= 0:
		return fs.usageError(errOut, "--timeout %v: must be positive, e.g. --timeout 2s", *timeout)
	}
	if err := idf.check(false); err != nil {
		return fs.usageError(errOut, "%v", err)
	}
	method := positional[0]
	var payload []byte
	if *hexPayload != "" {
		p, err := hex.DecodeString(*hexPayload)
		if err != nil {
			return fs.usageError(errOut, "--hex: %v: give hex digits, two per byte", err)
		}
		payload = p
	}
	for _, f := range fields {
		p, err := appendFieldFlag(payload, f)
		if err != nil {
			return fs.usageError(errOut, "--field %s: %v", f, err)
		}
		payload = p
	}

	sig := signalContext(ctx)
	defer sig.stop()
	var dialOpts []runtime.ClientOption
	sealOpt, err := idf.clientOption(slog.New(slog.NewTextHandler(errOut, nil)))
	if err != nil {
		return fail(errOut, "call", err, nil)
	}
	if sealOpt != nil {
		dialOpts = append(dialOpts, sealOpt)
	}
	var client *runtime.Client
	if sf.service != "" { // by name (callservice.go)
		var done func()
		client, done, err = sf.dial(dialOpts...)
		defer done()
	} else {
		client, err = runtime.Dial("udp", *addr, dialOpts...)
	}
	if err != nil {
		return fail(errOut, "call", err, nil)
	}
	defer client.Close()
	callCtx, cancel := context.WithTimeout(sig, *timeout)
	defer cancel()
	reply, err := client.Call(callCtx, method, payload, nil)
	if sig.received() != nil {
		return sig.interrupted(errOut, "call", "")
	}
	var se *runtime.StatusError
	if err != nil && !errors.As(err, &se) {
		return fail(errOut, "call", err, nil)
	}
	if se != nil && se.Message != "" {
		fmt.Fprintf(out, "status %v: %s\n", reply.Status, se.Message)
	} else {
		fmt.Fprintf(out, "status %v\n", reply.Status)
	}
	printFields(out, reply.Payload)
	if reply.Status != proto.StatusOK {
		return exitFailure
	}
	return exitOK
}

// appendFieldFlag appends the field described by "N=INTEGER" or
// "N:TYPE=VALUE" to payload.
func appendFieldFlag(payload []byte, spec string) ([]byte, error) {
	key, value, ok := strings.Cut(spec, "=")
	if !ok {
		return nil, errors.New("want N=INTEGER or N:TYPE=VALUE, e.g. 1=42 or 2:string=hello")
	}
	numStr, typ, typed := strings.Cut(key, ":")
	n, err := strconv.ParseUint(numStr, 10, 32)
	if err != nil || n < 1 || n > uint64(protowire.MaxValidNumber) {
		return nil, fmt.Errorf("field number %q not in 1..%d", numStr, protowire.MaxValidNumber)
	}
	num := protowire.Number(n)
	if num >= protowire.FirstReservedNumber && num <= protowire.LastReservedNumber {
		return nil, fmt.Errorf("field number %d is reserved by protobuf (%d..%d)", num, protowire.FirstReservedNumber, protowire.LastReservedNumber)
	}
	if !typed {
		v, err := parseInt(value, 64)
		if err != nil {
			return nil, fmt.Errorf("%q is not an integer; give its type, e.g. %d:double=%s, %d:float=%s or %d:string=%s", value, num, value, num, value, num, value)
		}
		return protowire.AppendVarint(protowire.AppendTag(payload, num, protowire.VarintType), v), nil
	}
	enc, ok := scalarTypes[typ]
	if !ok {
		return nil, fmt.Errorf("unknown type %q: want one of %s", typ, strings.Join(scalarTypeNames, ", "))
	}
	b, err := enc.append(protowire.AppendTag(payload, num, enc.wire), value)
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid %s: %w", value, typ, err)
	}
	return b, nil
}

// scalarType encodes a command-line value as one protobuf scalar type.
type scalarType struct {
	wire   protowire.Type
	append func(b []byte, v string) ([]byte, error)
}

var scalarTypeNames = []string{"int32", "int64", "uint32", "uint64", "sint32", "sint64", "bool", "enum",
	"fixed32", "sfixed32", "float", "fixed64", "sfixed64", "double", "string", "bytes"}

var scalarTypes = map[string]scalarType{
	// int32 and enum are sign-extended to 64 bits on the wire, as protobuf does.
	"int32":  {protowire.VarintType, varintOf(func(v string) (uint64, error) { i, err := strconv.ParseInt(v, 0, 32); return uint64(i), err })},
	"enum":   {protowire.VarintType, varintOf(func(v string) (uint64, error) { i, err := strconv.ParseInt(v, 0, 32); return uint64(i), err })},
	"int64":  {protowire.VarintType, varintOf(func(v string) (uint64, error) { i, err := strconv.ParseInt(v, 0, 64); return uint64(i), err })},
	"uint32": {protowire.VarintType, varintOf(func(v string) (uint64, error) { return strconv.ParseUint(v, 0, 32) })},
	"uint64": {protowire.VarintType, varintOf(func(v string) (uint64, error) { return strconv.ParseUint(v, 0, 64) })},
	"sint32": {protowire.VarintType, varintOf(func(v string) (uint64, error) {
		i, err := strconv.ParseInt(v, 0, 32)
		return protowire.EncodeZigZag(i), err
	})},
	"sint64": {protowire.VarintType, varintOf(func(v string) (uint64, error) {
		i, err := strconv.ParseInt(v, 0, 64)
		return protowire.EncodeZigZag(i), err
	})},
	"bool": {protowire.VarintType, varintOf(func(v string) (uint64, error) {
		b, err := strconv.ParseBool(v)
		if b {
			return 1, err
		}
		return 0, err
	})},
	"fixed32":  {protowire.Fixed32Type, fixed32Of(func(v string) (uint32, error) { u, err := strconv.ParseUint(v, 0, 32); return uint32(u), err })},
	"sfixed32": {protowire.Fixed32Type, fixed32Of(func(v string) (uint32, error) { i, err := strconv.ParseInt(v, 0, 32); return uint32(i), err })},
	"float": {protowire.Fixed32Type, fixed32Of(func(v string) (uint32, error) {
		f, err := strconv.ParseFloat(v, 32)
		return math.Float32bits(float32(f)), err
	})},
	"fixed64":  {protowire.Fixed64Type, fixed64Of(func(v string) (uint64, error) { return strconv.ParseUint(v, 0, 64) })},
	"sfixed64": {protowire.Fixed64Type, fixed64Of(func(v string) (uint64, error) { i, err := strconv.ParseInt(v, 0, 64); return uint64(i), err })},
	"double": {protowire.Fixed64Type, fixed64Of(func(v string) (uint64, error) {
		f, err := strconv.ParseFloat(v, 64)
		return math.Float64bits(f), err
	})},
	"string": {protowire.BytesType, func(b []byte, v string) ([]byte, error) {
		if !utf8.ValidString(v) {
			return nil, errors.New("not UTF-8 (protobuf strings must be); give bytes as hex with N:bytes=…")
		}
		return protowire.AppendString(b, v), nil
	}},
	"bytes": {protowire.BytesType, func(b []byte, v string) ([]byte, error) {
		raw, err := hex.DecodeString(v)
		if err != nil {
			return nil, fmt.Errorf("bytes are given in hex: %w", err)
		}
		return protowire.AppendBytes(b, raw), nil
	}},
}

func varintOf(parse func(string) (uint64, error)) func([]byte, string) ([]byte, error) {
	return func(b []byte, v string) ([]byte, error) {
		u, err := parse(v)
		if err != nil {
			return nil, numErr(err)
		}
		return protowire.AppendVarint(b, u), nil
	}
}

func fixed32Of(parse func(string) (uint32, error)) func([]byte, string) ([]byte, error) {
	return func(b []byte, v string) ([]byte, error) {
		u, err := parse(v)
		if err != nil {
			return nil, numErr(err)
		}
		return protowire.AppendFixed32(b, u), nil
	}
}

func fixed64Of(parse func(string) (uint64, error)) func([]byte, string) ([]byte, error) {
	return func(b []byte, v string) ([]byte, error) {
		u, err := parse(v)
		if err != nil {
			return nil, numErr(err)
		}
		return protowire.AppendFixed64(b, u), nil
	}
}

// numErr keeps strconv's reason (out of range, invalid syntax) without
// repeating the value the caller already quotes.
func numErr(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
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
