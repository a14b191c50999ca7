package redistest

import (
	"context"
	"testing"
)

func TestStart(t *testing.T) {
	rdb := Start(t)
	ctx := context.Background()
	if err := rdb.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if got := rdb.Get(ctx, "k").Val(); got != "v" {
		t.Fatalf("GET = %q", got)
	}
}

func TestStartServerIsOwnServer(t *testing.T) {
	a, b := StartServer(t), StartServer(t)
	if a.Addr() == b.Addr() {
		t.Fatal("two servers on one address")
	}
}
