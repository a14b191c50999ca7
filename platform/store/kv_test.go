package store

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestKV(t *testing.T) {
	b := setup(t)
	if _, found, err := b.store.KVGet(b.ctx, ns, "k"); err != nil || found {
		t.Fatalf("get before set: found %v err %v", found, err)
	}
	if err := b.store.KVSet(b.ctx, ns, "k", []byte("v1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := b.store.KVSet(b.ctx, "other", "k", []byte("other ns"), 0); err != nil {
		t.Fatal(err)
	}
	if v, found, err := b.store.KVGet(b.ctx, ns, "k"); err != nil || !found || string(v) != "v1" {
		t.Fatalf("get: %q %v %v", v, found, err)
	}
	if ttl := b.rdb.PTTL(b.ctx, "atf:{kv}:default:k").Val(); ttl != -time.Nanosecond {
		t.Errorf("no-ttl key has ttl %s", ttl)
	}
	if err := b.store.KVSet(b.ctx, ns, "t", []byte("x"), 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := b.rdb.PTTL(b.ctx, "atf:{kv}:default:t").Val(); ttl <= 80*time.Second || ttl > 90*time.Second {
		t.Errorf("ttl %s, want ~90s", ttl)
	}
	if found, err := b.store.KVDelete(b.ctx, ns, "k"); err != nil || !found {
		t.Fatalf("delete: %v %v", found, err)
	}
	if found, _ := b.store.KVDelete(b.ctx, ns, "k"); found {
		t.Error("delete of a deleted key found it")
	}
	if v, found, _ := b.store.KVGet(b.ctx, "other", "k"); !found || !bytes.Equal(v, []byte("other ns")) {
		t.Error("namespaces are not apart")
	}
	big := make([]byte, MaxKVValueBytes+1)
	if err := b.store.KVSet(b.ctx, ns, "big", big, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("value over the cap: %v", err)
	}
	if err := b.store.KVSet(b.ctx, ns, strings.Repeat("k", MaxKVKeyBytes+1), nil, 0); !errors.Is(err, ErrTooLarge) {
		t.Errorf("key over the cap: %v", err)
	}
	if _, _, err := b.store.KVGet(b.ctx, ns, ""); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty key: %v", err)
	}
}
