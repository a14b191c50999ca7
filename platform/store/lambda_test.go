package store

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

func TestModule(t *testing.T) {
	b := setup(t)
	if _, err := b.store.GetModule(b.ctx, "abc"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetModule of a missing module: %v, want ErrNotFound", err)
	}
	if err := b.store.PutModule(b.ctx, "abc", []byte("\x00asm1")); err != nil {
		t.Fatal(err)
	}
	// Content-addressed: a second put never replaces the bytes.
	if err := b.store.PutModule(b.ctx, "abc", []byte("other")); err != nil {
		t.Fatal(err)
	}
	got, err := b.store.GetModule(b.ctx, "abc")
	if err != nil || string(got) != "\x00asm1" {
		t.Fatalf("GetModule = %q, %v", got, err)
	}
}

func TestDeployLambda(t *testing.T) {
	b := setup(t)
	first, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns, Name: "echo", SHA256: "s1", AllowedHosts: []string{"example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if first.Version != 1 || first.Timeout != DefaultTimeout || first.MemoryMB != DefaultMemoryMB ||
		first.MaxAttempts != DefaultMaxAttempts || first.RetryBackoff != DefaultRetryBackoff ||
		first.RetryBackoffMax != DefaultRetryBackoffMax || first.ABI != atfv1.Abi_ABI_COMMAND ||
		first.MaxOutputBytes != DefaultMaxOutputBytes || first.MaxLogBytes != DefaultMaxLogBytes {
		t.Fatalf("first deploy: %+v", first)
	}
	created := b.clock.Now()
	b.clock.Advance(time.Minute)
	second, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns, Name: "echo", SHA256: "s2", MaxAttempts: 5, Timeout: time.Second, MaxOutputBytes: 10, MaxLogBytes: 20})
	if err != nil {
		t.Fatal(err)
	}
	if second.Version != 2 || !second.CreatedAt.Equal(created) || !second.UpdatedAt.Equal(b.clock.Now()) {
		t.Fatalf("second deploy: version %d created %s updated %s", second.Version, second.CreatedAt, second.UpdatedAt)
	}
	got, err := b.store.GetLambda(b.ctx, ns, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != 2 || got.SHA256 != "s2" || got.MaxAttempts != 5 || got.Timeout != time.Second ||
		len(got.AllowedHosts) != 0 || !got.CreatedAt.Equal(created) || got.Namespace != ns ||
		got.MaxOutputBytes != 10 || got.MaxLogBytes != 20 {
		t.Fatalf("GetLambda after redeploy: %+v", got)
	}

	if _, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns, Name: "alpha", SHA256: "s1", Imports: []string{"wasi_snapshot_preview1"}}); err != nil {
		t.Fatal(err)
	}
	list, err := b.store.ListLambdas(b.ctx, ns)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, l := range list {
		names = append(names, l.Name)
	}
	if !slices.Equal(names, []string{"alpha", "echo"}) || !slices.Equal(list[0].Imports, []string{"wasi_snapshot_preview1"}) {
		t.Fatalf("ListLambdas: %v %+v", names, list[0])
	}
	if other, _ := b.store.ListLambdas(b.ctx, "other"); len(other) != 0 {
		t.Fatalf("ListLambdas(other) = %v", other)
	}

	// Delete: gone, module untouched, the version numbers are not reused.
	if err := b.store.PutModule(b.ctx, "s2", []byte("wasm")); err != nil {
		t.Fatal(err)
	}
	if err := b.store.DeleteLambda(b.ctx, ns, "echo"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.GetModule(b.ctx, "s2"); err != nil {
		t.Fatalf("module after DeleteLambda: %v", err)
	}
	if err := b.store.DeleteLambda(b.ctx, ns, "echo"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second DeleteLambda: %v, want ErrNotFound", err)
	}
	third, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns, Name: "echo", SHA256: "s3"})
	if err != nil {
		t.Fatal(err)
	}
	if third.Version != 3 {
		t.Fatalf("deploy after delete: version %d, want 3", third.Version)
	}
}

func TestLambdaNotFound(t *testing.T) {
	b := setup(t)
	_, err := b.store.GetLambda(b.ctx, ns, "nope")
	if !errors.Is(err, ErrNotFound) || err.Error() != `lambda "nope" not found` {
		t.Fatalf("GetLambda: %v", err)
	}
	if _, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: "other", Name: "nope"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.GetLambda(b.ctx, ns, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetLambda across namespaces: %v", err)
	}
	if _, err := b.store.DeployLambda(b.ctx, Lambda{Namespace: ns}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "name") {
		t.Fatalf("DeployLambda without a name: %v", err)
	}
}
