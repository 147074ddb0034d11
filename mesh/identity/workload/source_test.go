package workload_test

import (
	"context"
	"crypto/x509"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/zerohop/zerohop/mesh/identity"
	"github.com/zerohop/zerohop/mesh/identity/identitytest"
	wl "github.com/zerohop/zerohop/mesh/identity/workload"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// agent is a Workload API server made for the test: it streams the
// X.509-SVID it holds, and a new response each time push is called, over
// a real gRPC server on a unix socket. go-spiffe ships its fake agent
// only as an internal package, so this one is written against the
// exported service definition.
type agent struct {
	workload.UnimplementedSpiffeWorkloadAPIServer
	ca   *identitytest.CA
	mu   sync.Mutex
	svid *x509svid.SVID
	subs []chan struct{}
}

func (a *agent) response() (*workload.X509SVIDResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	key, err := x509.MarshalPKCS8PrivateKey(a.svid.PrivateKey)
	if err != nil {
		return nil, err
	}
	var chain []byte
	for _, c := range a.svid.Certificates {
		chain = append(chain, c.Raw...)
	}
	return &workload.X509SVIDResponse{Svids: []*workload.X509SVID{{
		SpiffeId: a.svid.ID.String(), X509Svid: chain, X509SvidKey: key, Bundle: a.ca.Cert.Raw,
	}}}, nil
}

func (a *agent) FetchX509SVID(_ *workload.X509SVIDRequest, stream grpc.ServerStreamingServer[workload.X509SVIDResponse]) error {
	// The Workload API requires this header of every client.
	md, _ := metadata.FromIncomingContext(stream.Context())
	if v := md.Get("workload.spiffe.io"); len(v) != 1 || v[0] != "true" {
		return status.Error(codes.InvalidArgument, "security header missing")
	}
	ch := make(chan struct{}, 1)
	a.mu.Lock()
	a.subs = append(a.subs, ch)
	a.mu.Unlock()
	for {
		r, err := a.response()
		if err != nil {
			return err
		}
		if err := stream.Send(r); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (a *agent) push(svid *x509svid.SVID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.svid = svid
	for _, ch := range a.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// TestWorkloadAPISource: the source gets its SVID and bundle from a real
// gRPC Workload API server, follows a rotation the agent streams, and
// serves a real handshake with it.
func TestWorkloadAPISource(t *testing.T) {
	ca, err := identitytest.NewCA("test.zerohop")
	if err != nil {
		t.Fatal(err)
	}
	first, err := ca.IssueFor("spiffe://test.zerohop/ns/shop/sa/web", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{ca: ca, svid: first}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	workload.RegisterSpiffeWorkloadAPIServer(srv, a)
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	src, err := wl.New(ctx, "unix://"+sock)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var _ identity.Source = src
	got, err := src.GetX509SVID()
	if err != nil || got.ID != first.ID {
		t.Fatalf("SVID %v, %v", got, err)
	}
	if b, err := src.GetX509BundleForTrustDomain(ca.TrustDomain); err != nil || !b.HasX509Authority(ca.Cert) {
		t.Fatalf("bundle: %v", err)
	}

	// Rotation streamed by the agent.
	second, err := ca.IssueFor("spiffe://test.zerohop/ns/shop/sa/web-v2", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a.push(second)
	deadline := time.After(10 * time.Second)
	for {
		if s, _ := src.GetX509SVID(); s.ID == second.ID {
			break
		}
		select {
		case <-src.Updated():
		case <-deadline:
			t.Fatal("the rotated SVID never arrived")
		}
	}

	// A handshake between a file-less server on this source and a client.
	serverT, _ := identity.NewTable(identity.TableConfig{})
	l, err := identity.Listen(netipLoopback(), &identity.Config{Source: src, Allow: identity.AllowTrustDomain(ca.TrustDomain), Table: serverT})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = l.Serve() }()
	defer l.Close()
	csvid, _ := ca.IssueFor("spiffe://test.zerohop/ns/shop/sa/api", time.Hour)
	ct, _ := identity.NewTable(identity.TableConfig{})
	s, err := identity.Dial(ctx, l.Addr(), &identity.Config{Source: identitytest.NewSource(csvid, ca.Bundle()), Allow: identity.AllowTrustDomain(ca.TrustDomain), Table: ct})
	if err != nil {
		t.Fatal(err)
	}
	if s.PeerString() != second.ID.String() {
		t.Fatalf("server presented %s", s.PeerString())
	}
}

func TestWorkloadAPINoAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	sock := "unix://" + filepath.Join(t.TempDir(), "nobody.sock")
	_, err := wl.New(ctx, sock)
	if err == nil || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "agent") {
		t.Fatalf("no agent: %v", err)
	}
	t.Setenv(wl.EnvSocket, "")
	if _, err := wl.New(ctx, ""); err == nil || !strings.Contains(err.Error(), wl.EnvSocket) {
		t.Fatalf("no address: %v", err)
	}
}
