package store

import (
	"errors"
	"slices"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

func TestListTasks(t *testing.T) {
	b := setup(t)
	// 25 tasks over all partitions, several per millisecond; every third in
	// collection "c", every fifth cancelled.
	var all []string
	var inC, cancelled []string
	for i := range 25 {
		if i%2 == 0 {
			b.clock.Advance(time.Millisecond)
		}
		task := b.schedule(t, NewTask{Collection: map[bool]string{true: "c"}[i%3 == 0]})
		all = append(all, task.ID)
		if i%3 == 0 {
			inC = append(inC, task.ID)
		}
		if i%5 == 0 {
			if _, err := b.store.Cancel(b.ctx, ns, task.ID); err != nil {
				t.Fatal(err)
			}
			cancelled = append(cancelled, task.ID)
		}
	}
	b.schedule(t, NewTask{Lambda: "other"})
	b.schedule(t, NewTask{Namespace: "team"})

	// Newest first: by created ms, ties by the ULID part of the id (ids
	// made in one millisecond by one process rise; across processes or
	// clocks the tie order is arbitrary but fixed).
	created := map[string]int64{}
	for _, id := range all {
		created[id] = b.get(t, id).CreatedAt.UnixMilli()
	}
	newestFirst := func(ids []string) []string {
		ids = slices.Clone(ids)
		slices.SortFunc(ids, func(x, y string) int {
			if (cursor{created[x], x}).after(cursor{created[y], y}) {
				return -1
			}
			return 1
		})
		return ids
	}
	list := func(f ListFilter) []string {
		t.Helper()
		f.Namespace, f.Lambda = ns, "echo"
		var ids []string
		for pages := 0; ; pages++ {
			if pages > 50 {
				t.Fatal("paging does not end")
			}
			tasks, next, err := b.store.ListTasks(b.ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if f.PageSize > 0 && len(tasks) > f.PageSize {
				t.Fatalf("page of %d, size %d", len(tasks), f.PageSize)
			}
			for _, task := range tasks {
				ids = append(ids, task.ID)
			}
			if next == "" {
				return ids
			}
			f.PageToken = next
		}
	}

	if got := list(ListFilter{}); !slices.Equal(got, newestFirst(all)) {
		t.Fatalf("one page:\n got %v\nwant %v", got, newestFirst(all))
	}
	for _, size := range []int{1, 4, 7, 25} {
		if got := list(ListFilter{PageSize: size}); !slices.Equal(got, newestFirst(all)) {
			t.Fatalf("pages of %d:\n got %v\nwant %v", size, got, newestFirst(all))
		}
	}
	if got := list(ListFilter{PageSize: 2, Collection: "c"}); !slices.Equal(got, newestFirst(inC)) {
		t.Fatalf("collection c:\n got %v\nwant %v", got, newestFirst(inC))
	}
	if got := list(ListFilter{PageSize: 3, State: atfv1.TaskState_TASK_STATE_CANCELLED}); !slices.Equal(got, newestFirst(cancelled)) {
		t.Fatalf("cancelled:\n got %v\nwant %v", got, newestFirst(cancelled))
	}
	if got := list(ListFilter{State: atfv1.TaskState_TASK_STATE_SUCCESS}); len(got) != 0 {
		t.Fatalf("success: %v", got)
	}

	// Paging is stable while new tasks arrive: they are newer than page 1.
	page, next, err := b.store.ListTasks(b.ctx, ListFilter{Namespace: ns, Lambda: "echo", PageSize: 10})
	if err != nil || len(page) != 10 || next == "" {
		t.Fatalf("page 1: %d %q %v", len(page), next, err)
	}
	b.clock.Advance(time.Millisecond)
	b.schedule(t, NewTask{})
	rest, _, err := b.store.ListTasks(b.ctx, ListFilter{Namespace: ns, Lambda: "echo", PageSize: 100, PageToken: next})
	if err != nil || len(rest) != 15 || rest[0].ID != newestFirst(all)[10] {
		t.Fatalf("page 2 after an insert: %d tasks %v", len(rest), err)
	}

	// Expired tasks are skipped and their index entries dropped.
	gone := all[24]
	p, _ := b.store.PartitionOf(gone)
	b.rdb.Del(b.ctx, taskKey(p, gone))
	if got := list(ListFilter{PageSize: 5}); slices.Contains(got, gone) || len(got) != 25 {
		t.Fatalf("after expiry: %d tasks", len(got))
	}
	if _, err := b.rdb.ZScore(b.ctx, indexKey(p, ns, "echo"), gone).Result(); err == nil {
		t.Fatal("index entry of an expired task kept")
	}

	// No lambda: every lambda of the namespace.
	for _, name := range []string{"echo", "other"} {
		if _, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns, Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	tasks, _, err := b.store.ListTasks(b.ctx, ListFilter{Namespace: ns})
	if err != nil || len(tasks) != 26 {
		t.Fatalf("all lambdas: %d %v", len(tasks), err)
	}

	if _, _, err := b.store.ListTasks(b.ctx, ListFilter{Namespace: ns, Lambda: "echo", PageToken: "%%%"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad token: %v", err)
	}
}
