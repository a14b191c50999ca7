package store

import (
	"slices"
	"testing"
	"time"
)

func TestBalancePartitions(t *testing.T) {
	b := setup(t)
	const lease = 10 * time.Second
	balance := func(owner string) []int {
		t.Helper()
		got, err := b.store.BalancePartitions(b.ctx, owner, lease)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	n := b.store.Partitions()
	if got := balance("a"); len(got) != n {
		t.Fatalf("a alone owns %v, want all %d", got, n)
	}
	// b joins: a sheds half at its next renewal, b takes it at its next.
	if got := balance("b"); len(got) != 0 {
		t.Fatalf("b took %v while a's leases are live", got)
	}
	a := balance("a")
	bb := balance("b")
	if len(a) != n/2 || len(bb) != n/2 {
		t.Fatalf("a owns %v, b owns %v; want half each", a, bb)
	}
	for _, p := range a {
		if slices.Contains(bb, p) {
			t.Fatalf("partition %d owned by both", p)
		}
	}
	// a dies: once its leases run out, b owns everything.
	b.clock.Advance(lease / 2)
	if got := balance("b"); len(got) != n/2 {
		t.Fatalf("b owns %v before a's leases ran out", got)
	}
	b.clock.Advance(lease/2 + time.Millisecond)
	if got := balance("b"); len(got) != n {
		t.Fatalf("b owns %v after a's leases ran out, want all", got)
	}
	// A clean stop hands over at once.
	balance("c")
	if err := b.store.ReleasePartitions(b.ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if got := balance("c"); len(got) != n {
		t.Fatalf("c owns %v after b released, want all", got)
	}
}
