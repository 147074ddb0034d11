package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/zerohop/zerohop/mesh/telemetry"
	"github.com/zerohop/zerohop/runtime"
)

// telemetryFlags are serve's flags for mesh/telemetry: the admin endpoint
// (always on its abstract socket; --admin adds a listener) and tracing.
type telemetryFlags struct {
	admin      *string
	otlp       *string
	traceRatio *float64
	tracer     *telemetry.Tracer
	sessions   telemetry.SessionSource // the sealed-frame sessions (--identity), nil without
}

func addTelemetryFlags(fs *flag.FlagSet) *telemetryFlags {
	return &telemetryFlags{
		admin: fs.String("admin", "", "also serve the admin endpoint (/metrics, /stat, /healthz, /debug/pprof) on HOST:PORT or unix:PATH;\n"+
			"it always listens on the abstract socket "+telemetry.SocketPrefix+"ADDR"),
		otlp:       fs.String("otlp", "", "export trace spans over OTLP/HTTP to this URL (e.g. http://127.0.0.1:4318/v1/traces)"),
		traceRatio: fs.Float64("trace-ratio", 0, "with --otlp: fraction of requests without a caller's trace context that start a trace"),
	}
}

// check validates the flags; its errors are usage errors naming the flag.
func (f *telemetryFlags) check() error {
	if *f.admin != "" {
		if _, err := telemetry.ParseEndpoint(*f.admin); err != nil {
			return fmt.Errorf("--admin %q: %w", *f.admin, err)
		}
	}
	if r := *f.traceRatio; math.IsNaN(r) || r < 0 || r > 1 {
		return fmt.Errorf("--trace-ratio %v: want a fraction from 0 to 1, e.g. --trace-ratio 0.01", r)
	}
	if *f.otlp == "" {
		if *f.traceRatio != 0 {
			return errors.New("--trace-ratio needs --otlp URL (where the spans go)")
		}
		return nil
	}
	if u, err := url.Parse(*f.otlp); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--otlp %q: want an OTLP/HTTP URL, e.g. --otlp http://127.0.0.1:4318/v1/traces", *f.otlp)
	}
	return nil
}

// serverOptions adds the tracing middleware (first, so its spans cover
// every other middleware) when --otlp is set. Call check first.
func (f *telemetryFlags) serverOptions(opts []runtime.Option) ([]runtime.Option, error) {
	if *f.otlp == "" {
		return opts, nil
	}
	tr, err := telemetry.NewTracer(telemetry.TraceConfig{Endpoint: *f.otlp, Ratio: *f.traceRatio, Service: "zerohop-serve"})
	if err != nil {
		return nil, fmt.Errorf("--otlp %s: %w", *f.otlp, err)
	}
	f.tracer = tr
	return append([]runtime.Option{tr.Option()}, opts...), nil
}

// start serves the admin endpoint of srv; the returned stop closes it and
// flushes the last spans, after the server's shutdown.
// policy, when not nil, is mounted at /policy/ (zerohop acl's API).
func (f *telemetryFlags) start(srv *runtime.Server, iface string, policy http.Handler, log *slog.Logger) (stop func(), err error) {
	if iface == "" && srv.Backend() == runtime.BackendXSK {
		iface = interfaceOf(srv.Addr().Addr().String())
	}
	src := telemetry.Sources{Server: srv, Iface: iface, Sessions: f.sessions}
	if f.tracer != nil {
		src.Tracer = f.tracer
	}
	a, err := telemetry.NewAdmin(telemetry.AdminConfig{Listen: *f.admin, Logger: log}, src)
	if err == nil {
		if policy != nil {
			a.Handle("/policy/", policy)
		}
		err = a.Start()
	}
	if err != nil {
		f.closeTracer()
		return nil, err
	}
	addrs := []string{}
	for _, ad := range a.Addrs() {
		addrs = append(addrs, ad.Network()+":"+ad.String())
	}
	log.Info("zerohop admin endpoint", "listen", addrs)
	return func() { a.Close(); f.closeTracer() }, nil
}

func (f *telemetryFlags) closeTracer() {
	if f.tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.tracer.Close(ctx)
	}
}

// interfaceOf names the interface holding ip ("" when none does).
func interfaceOf(ip string) string {
	ifs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.String() == ip {
				return ifc.Name
			}
		}
	}
	return ""
}
