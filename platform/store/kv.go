package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The key-value store of the atf_v1 host functions (kv_get, kv_set,
// kv_delete): one Redis string per key, atf:{kv}:<ns>:<key>. Every
// operation is a single command on one key, so the hash tag only groups
// the store's keys; nothing spans two keys.

// Limits of the key-value store.
const (
	MaxKVKeyBytes   = 512
	MaxKVValueBytes = 1 << 20
)

// ErrTooLarge: a value or key over its limit.
var ErrTooLarge = errors.New("too large")

func kvKey(ns, key string) string { return "atf:{kv}:" + ns + ":" + key }

func checkKV(ns, key string, value []byte) error {
	switch {
	case ns == "":
		return errorf(ErrInvalid, "kv: no namespace")
	case key == "":
		return errorf(ErrInvalid, "kv: empty key")
	case len(key) > MaxKVKeyBytes:
		return errorf(ErrTooLarge, "kv: key of %d bytes is over %d", len(key), MaxKVKeyBytes)
	case len(value) > MaxKVValueBytes:
		return errorf(ErrTooLarge, "kv: value of %d bytes is over %d", len(value), MaxKVValueBytes)
	}
	return nil
}

// KVGet returns the value of key in namespace ns; found is false when the
// key is not set (or expired).
func (s *Store) KVGet(ctx context.Context, ns, key string) (value []byte, found bool, err error) {
	if err := checkKV(ns, key, nil); err != nil {
		return nil, false, err
	}
	v, err := s.rdb.Get(ctx, kvKey(ns, key)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("store: kv get: %w", err)
	}
	return v, true, nil
}

// KVSet sets key in ns to value; ttl 0 keeps it until deleted (a positive
// ttl is rounded up to a millisecond).
func (s *Store) KVSet(ctx context.Context, ns, key string, value []byte, ttl time.Duration) error {
	if err := checkKV(ns, key, value); err != nil {
		return err
	}
	if ttl < 0 {
		return errorf(ErrInvalid, "kv: negative ttl %s", ttl)
	}
	if ttl > 0 && ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	if err := s.rdb.Set(ctx, kvKey(ns, key), value, ttl).Err(); err != nil {
		return fmt.Errorf("store: kv set: %w", err)
	}
	return nil
}

// KVDelete deletes key in ns and reports whether it was set.
func (s *Store) KVDelete(ctx context.Context, ns, key string) (found bool, err error) {
	if err := checkKV(ns, key, nil); err != nil {
		return false, err
	}
	n, err := s.rdb.Del(ctx, kvKey(ns, key)).Result()
	if err != nil {
		return false, fmt.Errorf("store: kv delete: %w", err)
	}
	return n > 0, nil
}
