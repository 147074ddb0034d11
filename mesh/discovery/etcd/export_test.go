package etcd

import (
	"context"
	"errors"

	"github.com/zerohop/zerohop/mesh/discovery"
	"github.com/zerohop/zerohop/mesh/discovery/internal/conntest"
)

// FollowFrom runs one watch of service from the revision after rev, as a
// resolver does after a get at rev, and says whether it ended asking for
// a fresh get.
func FollowFrom(ctx context.Context, b *Builder, service string, rev int64) (getAgain bool, err error) {
	w := &watch{b: b, prefix: ServicePrefix(b.cfg.prefix, service)}
	w.r = discovery.Start(conntest.New(), nil, func(ctx context.Context, _ *discovery.Resolver) { <-ctx.Done() })
	defer w.r.Close()
	err = w.follow(ctx, discovery.Set{}, rev)
	if errors.Is(err, errResolveNow) {
		return true, nil
	}
	return false, err
}
