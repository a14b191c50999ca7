package store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// PutModule stores a module's bytes under their sha256. Modules are
// content-addressed and shared between lambdas and versions: storing the
// same module again is a no-op.
func (s *Store) PutModule(ctx context.Context, sha256 string, wasm []byte) error {
	if err := s.rdb.SetNX(ctx, moduleKey(sha256), wasm, 0).Err(); err != nil {
		return fmt.Errorf("store: put module %s: %w", sha256, err)
	}
	return nil
}

// GetModule returns a module's bytes; ErrNotFound when none has the hash.
func (s *Store) GetModule(ctx context.Context, sha256 string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, moduleKey(sha256)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, errorf(ErrNotFound, "module %s not found", sha256)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get module %s: %w", sha256, err)
	}
	return b, nil
}

// withDefaults fills a lambda's unset policy fields.
func (l Lambda) withDefaults() Lambda {
	if l.Timeout <= 0 {
		l.Timeout = DefaultTimeout
	}
	if l.MemoryMB <= 0 {
		l.MemoryMB = DefaultMemoryMB
	}
	if l.MaxAttempts <= 0 {
		l.MaxAttempts = DefaultMaxAttempts
	}
	if l.RetryBackoff <= 0 {
		l.RetryBackoff = DefaultRetryBackoff
	}
	if l.RetryBackoffMax <= 0 {
		l.RetryBackoffMax = DefaultRetryBackoffMax
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = DefaultMaxOutputBytes
	}
	if l.MaxLogBytes <= 0 {
		l.MaxLogBytes = DefaultMaxLogBytes
	}
	if l.ABI == atfv1.Abi_ABI_UNSPECIFIED {
		l.ABI = atfv1.Abi_ABI_COMMAND
	}
	return l
}

// DeployLambda stores l as the lambda's next version: defaults fill unset
// fields, Version is the previous version + 1 (1 at first; numbers are
// never reused, even after DeleteLambda), CreatedAt stays that of the first
// deploy and UpdatedAt is now. The module must have been stored with
// PutModule. It returns the lambda as stored.
func (s *Store) DeployLambda(ctx context.Context, l Lambda) (Lambda, error) {
	if l.Name == "" {
		return Lambda{}, errorf(ErrInvalid, "lambda name is empty")
	}
	l = l.withDefaults()
	fields, err := encodeLambda(l)
	if err != nil {
		return Lambda{}, fmt.Errorf("store: deploy lambda %q: %w", l.Name, err)
	}
	now := s.now()
	args := append([]any{l.Name, ms(now), l.Namespace}, fields...)
	res, err := deployLambdaScript.Run(ctx, s.rdb,
		[]string{lambdaKey(l.Namespace, l.Name), lambdasKey(l.Namespace), lambdaVersionsKey(l.Namespace), namespacesKey()},
		args...).Slice()
	if err != nil {
		return Lambda{}, fmt.Errorf("store: deploy lambda %q: %w", l.Name, err)
	}
	s.announceLambdaChange(ctx, l.Namespace, l.Name)
	l.Version, _ = res[0].(int64)
	created, _ := res[1].(string)
	l.CreatedAt = msTime(created)
	l.UpdatedAt = msTime(ms(now))
	return l, nil
}

// GetLambda returns the current version of a lambda.
func (s *Store) GetLambda(ctx context.Context, ns, name string) (Lambda, error) {
	h, err := s.rdb.HGetAll(ctx, lambdaKey(ns, name)).Result()
	if err != nil {
		return Lambda{}, fmt.Errorf("store: get lambda %q: %w", name, err)
	}
	if len(h) == 0 {
		return Lambda{}, errorf(ErrNotFound, "lambda %q not found", name)
	}
	return decodeLambda(ns, h)
}

// ListLambdas returns a namespace's lambdas sorted by name.
func (s *Store) ListLambdas(ctx context.Context, ns string) ([]Lambda, error) {
	names, err := s.rdb.SMembers(ctx, lambdasKey(ns)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: list lambdas: %w", err)
	}
	slices.Sort(names)
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, lambdaKey(ns, n))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("store: list lambdas: %w", err)
		}
	}
	out := make([]Lambda, 0, len(names))
	for _, c := range cmds {
		h := c.Val()
		if len(h) == 0 {
			continue // deleted between the two reads
		}
		l, err := decodeLambda(ns, h)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	return out, nil
}

// DeleteLambda removes a lambda. Its module stays (modules are shared) and
// so do its tasks.
func (s *Store) DeleteLambda(ctx context.Context, ns, name string) error {
	n, err := deleteLambdaScript.Run(ctx, s.rdb,
		[]string{lambdaKey(ns, name), lambdasKey(ns)}, name).Int()
	if err != nil {
		return fmt.Errorf("store: delete lambda %q: %w", name, err)
	}
	if n == 0 {
		return errorf(ErrNotFound, "lambda %q not found", name)
	}
	s.announceLambdaChange(ctx, ns, name)
	return nil
}

// lambdasChannel carries "<ns>/<name>" when a lambda is deployed, changed
// or deleted, so that controllers read their queues again at once.
const lambdasChannel = "atf:lambdas"

// announceLambdaChange publishes a change. It is fire-and-forget:
// controllers also re-read lambdas periodically.
func (s *Store) announceLambdaChange(ctx context.Context, ns, name string) {
	_ = s.rdb.Publish(ctx, lambdasChannel, ns+"/"+name).Err()
}

// LambdaChanges reports that some lambda was deployed, changed or
// deleted. The channel is buffered and coalesces bursts; the goroutine
// behind it stops and closes the channel when ctx ends. It returns once
// the subscription is in place.
func (s *Store) LambdaChanges(ctx context.Context) <-chan struct{} {
	return s.changes(ctx, lambdasChannel)
}
