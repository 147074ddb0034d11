package etcd_test

import (
	"context"
	"testing"

	"github.com/zerohop/zerohop/mesh/discovery/etcd"
	"github.com/zerohop/zerohop/mesh/discovery/etcd/etcdtest"
)

// A watch resuming from a revision etcd compacted away (after a long
// outage) must end so that the resolver gets everything afresh; the
// black-box tests cannot time an outage against a compaction, so this one
// starts a watch from a compacted revision directly.
func TestWatchFromCompactedRevisionAsksForGet(t *testing.T) {
	srv := etcdtest.StartEmbedded(t)
	cli := etcdtest.Client(t, srv.Endpoint)
	b, err := etcd.NewBuilder(cli)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	prefix := etcd.ServicePrefix(etcd.DefaultPrefix, service)
	first, err := cli.Put(ctx, prefix+"10.0.0.1:7000", `{"addr":"10.0.0.1:7000"}`)
	if err != nil {
		t.Fatal(err)
	}
	last, err := cli.Put(ctx, prefix+"10.0.0.2:7000", `{"addr":"10.0.0.2:7000"}`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, last.Header.Revision); err != nil {
		t.Fatal(err)
	}
	getAgain, err := etcd.FollowFrom(ctx, b, service, first.Header.Revision-1)
	if err != nil || !getAgain {
		t.Fatalf("a watch from a compacted revision ended with %v (get again: %v), want a request for a fresh get", err, getAgain)
	}
	if ctx.Err() != nil {
		t.Fatal("the watch from a compacted revision ran until the test's deadline")
	}
	if st := b.Stats(); st.Compactions != 1 {
		t.Fatalf("stats %+v, want 1 compaction", st)
	}
}
