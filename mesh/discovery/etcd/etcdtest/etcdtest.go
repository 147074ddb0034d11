package etcdtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/zerohop/zerohop/mesh/discovery/etcd"
)

// startTimeout bounds how long a start may take before the test fails.
const startTimeout = 20 * time.Second

// FreePort returns a TCP port on host that the kernel just handed out and
// that nobody listens on now.
func FreePort(t testing.TB, host string) int {
	t.Helper()
	port, err := freePort(host)
	if err != nil {
		t.Fatalf("etcdtest: %v", err)
	}
	return port
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("pick a free port on %s: %w", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func hostURL(host string, port int) url.URL {
	return url.URL{Scheme: "http", Host: net.JoinHostPort(host, fmt.Sprint(port))}
}

// Client returns a client of endpoint made from etcd.ClientConfig, with
// its logs dropped, that is closed in t.Cleanup.
func Client(t testing.TB, endpoint string) *clientv3.Client {
	t.Helper()
	cfg := etcd.ClientConfig(endpoint)
	cfg.Logger = zap.NewNop()
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client of %s: %v", endpoint, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// waitReady polls endpoint with a Get until it answers or the start
// timeout passes; exited, once closed, says the server is gone, and
// *exitErr why. With enter, connections are made inside it.
func waitReady(endpoint string, exited <-chan struct{}, exitErr *error, enter func(func() error) error) error {
	cfg := clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: time.Second, Logger: zap.NewNop()}
	if enter != nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var c net.Conn
			err := enter(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				return err
			})
			return c, err
		})}
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "etcdtest/ready")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("etcd exited before answering: %v", *exitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd did not answer within %v: %w", startTimeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
