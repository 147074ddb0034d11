package etcd

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/zerohop/zerohop/mesh/discovery"
)

// DefaultDialTimeout bounds the client's first connection in ClientConfig.
const DefaultDialTimeout = 2 * time.Second

// ClientConfig returns a client configuration for endpoints suited to
// registries and resolvers: gRPC's own reconnect backoff (1 s growing by
// 1.6× to 120 s, gRPC's connection-backoff defaults) is capped at
// discovery.DefaultBackoffMax, so that after a long outage the client is
// back within seconds of etcd, not up to two minutes later, and the
// first dial is bounded by DefaultDialTimeout. Add TLS and credentials to
// the result as needed.
func ClientConfig(endpoints ...string) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: DefaultDialTimeout,
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: discovery.DefaultBackoffBase, Multiplier: 1.6, Jitter: 0.2, MaxDelay: discovery.DefaultBackoffMax},
			MinConnectTimeout: DefaultDialTimeout,
		})},
	}
}
