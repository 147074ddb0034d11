package workload

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// EnvSocket is the environment variable the SPIFFE Workload API
// specification names for the agent's address ("unix:///path").
const EnvSocket = "SPIFFE_ENDPOINT_SOCKET"

// Source is a workload's identity from the Workload API.
type Source struct {
	addr string
	x    *workloadapi.X509Source
}

// New connects to the agent at addr ("unix:///run/spire/agent.sock"; ""
// reads EnvSocket) and waits, until ctx ends, for the first SVID.
func New(ctx context.Context, addr string) (*Source, error) {
	if addr == "" {
		addr = os.Getenv(EnvSocket)
	}
	if addr == "" {
		return nil, fmt.Errorf("workload: no Workload API address: set %s or pass the agent's socket (unix:///path)", EnvSocket)
	}
	x, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(addr)))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return nil, fmt.Errorf("workload: no SVID from the Workload API at %s before the deadline: is the agent running there and does it have an entry for this workload? (%w)", addr, err)
		}
		return nil, fmt.Errorf("workload: Workload API at %s: %w", addr, err)
	}
	return &Source{addr: addr, x: x}, nil
}

// Addr is the agent's address.
func (s *Source) Addr() string { return s.addr }

// GetX509SVID returns the current SVID (identity.Source).
func (s *Source) GetX509SVID() (*x509svid.SVID, error) {
	svid, err := s.x.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	return svid, nil
}

// GetX509BundleForTrustDomain returns the current bundle of td
// (identity.Source).
func (s *Source) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := s.x.GetX509BundleForTrustDomain(td)
	if err != nil {
		return nil, fmt.Errorf("workload: %w", err)
	}
	return b, nil
}

// Updated signals each time the agent sent a new SVID or bundle.
func (s *Source) Updated() <-chan struct{} { return s.x.Updated() }

// Close ends the stream to the agent.
func (s *Source) Close() error { return s.x.Close() }
