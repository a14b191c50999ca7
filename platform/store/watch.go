package store

import (
	"context"
	"fmt"
	"strings"
)

// TaskVersion is a fingerprint of what a watcher of a task sees change —
// state, attempt, progress, parked, cancel requested — read with one
// HMGET of a few short fields (never the payload or the output).
// WatchTask polls it and reads the whole task only when it changed: a
// watch costs Redis nothing for the tasks nobody watches, and the scripts
// on the hot path publish nothing.
func (s *Store) TaskVersion(ctx context.Context, ns, id string) (string, error) {
	p, err := s.PartitionOf(id)
	if err != nil {
		return "", err
	}
	v, err := s.rdb.HMGet(ctx, taskKey(p, id), fNamespace, fState, fAttempt, fToken, fProgress, fParked, fCancelReq).Result()
	if err != nil {
		return "", fmt.Errorf("store: task %s: %w", id, err)
	}
	if owner, _ := v[0].(string); v[1] == nil || namespaceOf(owner) != ns {
		return "", errorf(ErrNotFound, "task %q not found", id)
	}
	parts := make([]string, len(v)-1)
	for i, x := range v[1:] {
		parts[i], _ = x.(string)
	}
	return strings.Join(parts, " "), nil
}
