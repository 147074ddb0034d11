package etcdtest

import (
	"fmt"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Embedded is an etcd member running inside the test binary.
type Embedded struct {
	t   testing.TB
	cfg *embed.Config
	e   *embed.Etcd // nil while stopped
	// Endpoint is the client URL, the same across Stop and Start.
	Endpoint string
	// Dir is the data directory.
	Dir string
}

// StartEmbedded starts a one-member etcd on 127.0.0.1 and stops it in
// t.Cleanup.
func StartEmbedded(t testing.TB) *Embedded {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = t.TempDir()
	client, peer := hostURL("127.0.0.1", FreePort(t, "127.0.0.1")), hostURL("127.0.0.1", FreePort(t, "127.0.0.1"))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	s := &Embedded{t: t, cfg: cfg, Endpoint: client.String(), Dir: cfg.Dir}
	s.Start()
	t.Cleanup(s.Stop)
	return s
}

// Start starts the member again after Stop, on the same data directory
// and ports; it fails the test if etcd does not answer in time.
func (s *Embedded) Start() {
	s.t.Helper()
	if s.e != nil {
		return
	}
	e, err := embed.StartEtcd(s.cfg)
	if err != nil {
		s.t.Fatalf("etcdtest: start embedded etcd in %s: %v", s.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		s.t.Fatalf("etcdtest: embedded etcd failed while starting: %v", err)
	case <-time.After(startTimeout):
		e.Close()
		s.t.Fatalf("etcdtest: embedded etcd not ready within %v", startTimeout)
	}
	s.e = e
	if err := waitReady(s.Endpoint, nil, nil, nil); err != nil {
		s.t.Fatalf("etcdtest: embedded etcd at %s: %v", s.Endpoint, err)
	}
}

// Stop stops the member; its data stay for Start.
func (s *Embedded) Stop() {
	if s.e == nil {
		return
	}
	s.e.Close()
	s.e = nil
}

func (s *Embedded) String() string { return fmt.Sprintf("embedded etcd %s (%s)", s.Endpoint, s.Dir) }
