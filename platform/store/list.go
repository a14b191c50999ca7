package store

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// ListTasks returns a page of a lambda's tasks, newest first across all
// partitions, filtered by state and collection, and the token of the next
// page ("" at the end). An empty f.Lambda lists the tasks of every lambda
// the namespace has deployed now.
//
// The order is (created ms, ULID) descending; the page token is that pair for
// the last task returned, so pages stay stable while tasks are added.
// Index entries of tasks that expired are dropped as they are met.
func (s *Store) ListTasks(ctx context.Context, f ListFilter) ([]Task, string, error) {
	size := f.PageSize
	if size <= 0 {
		size = defaultPageSize
	}
	size = min(size, maxPageSize)
	cur, err := decodePageToken(f.PageToken)
	if err != nil {
		return nil, "", err
	}
	lambdas := []string{f.Lambda}
	if f.Lambda == "" {
		all, err := s.rdb.SMembers(ctx, lambdasKey(f.Namespace)).Result()
		if err != nil {
			return nil, "", fmt.Errorf("store: list tasks: %w", err)
		}
		lambdas = all
	}
	var srcs []*listSource
	for p := range s.opts.Partitions {
		for _, l := range lambdas {
			srcs = append(srcs, &listSource{part: p, key: indexKey(p, f.Namespace, l)})
		}
	}
	batch := int64(min(size+1, 200))
	if f.State != atfv1.TaskState_TASK_STATE_UNSPECIFIED || f.Collection != "" || f.DeadLetters {
		batch = 200 // filters drop entries: read further ahead
	}

	var (
		out   []Task
		stale = map[string][]any{} // index key -> ids whose task expired
		last  cursor
		more  bool
	)
	for {
		if err := s.refill(ctx, srcs, cur, batch); err != nil {
			return nil, "", err
		}
		// Take entries in merge order until a source runs dry (it must be
		// refilled before the order is known again) or the page is full.
		var picked []pick
		for len(out)+len(picked) < size {
			best := -1
			for i, src := range srcs {
				if len(src.buf) == 0 {
					continue
				}
				if best < 0 || src.buf[0].after(srcs[best].buf[0]) {
					best = i
				}
			}
			if best < 0 {
				break
			}
			src := srcs[best]
			picked = append(picked, pick{src: src, e: src.buf[0]})
			src.buf = src.buf[1:]
			if len(src.buf) == 0 && !src.done {
				break
			}
		}
		if len(picked) == 0 {
			break
		}
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(picked))
		for i, pk := range picked {
			cmds[i] = pipe.HGetAll(ctx, taskKey(pk.src.part, pk.e.id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", fmt.Errorf("store: list tasks: %w", err)
		}
		for i, pk := range picked {
			h := cmds[i].Val()
			if len(h) == 0 {
				stale[pk.src.key] = append(stale[pk.src.key], pk.e.id)
				continue
			}
			t, err := decodeTask(pk.e.id, h)
			if err != nil {
				return nil, "", err
			}
			if f.State != atfv1.TaskState_TASK_STATE_UNSPECIFIED && t.State != f.State {
				continue
			}
			if f.Collection != "" && t.Collection != f.Collection {
				continue
			}
			if f.DeadLetters && !isDeadLetter(t) {
				continue
			}
			out = append(out, t)
			last = pk.e
			if len(out) == size {
				break
			}
		}
		if len(out) == size {
			// More follow if any entry is left unread.
			for _, src := range srcs {
				if len(src.buf) > 0 || !src.done {
					more = true
				}
			}
			break
		}
	}
	if len(stale) > 0 {
		pipe := s.rdb.Pipeline()
		for key, ids := range stale {
			pipe.ZRem(ctx, key, ids...)
		}
		_, _ = pipe.Exec(ctx) // best effort: the next listing tries again
	}
	token := ""
	if more {
		token = last.encode()
	}
	if out == nil {
		out = []Task{}
	}
	return out, token, nil
}

// listSource is one index zset (a partition's tasks of one lambda) being
// read newest first.
type listSource struct {
	part   int
	key    string
	offset int64 // entries read so far from below the cursor
	buf    []cursor
	done   bool
}

type pick struct {
	src *listSource
	e   cursor
}

// cursor is a position in the listing order: (created ms, id) descending.
type cursor struct {
	ms int64
	id string
}

// after reports whether c comes before o in the listing (is newer). Ties
// in the millisecond go by the ULID part of the id, which rises with
// creation within a process, then by partition. Within one index zset
// (one partition prefix) this is Redis's own order for equal scores.
func (c cursor) after(o cursor) bool {
	if c.ms != o.ms {
		return c.ms > o.ms
	}
	if len(c.id) > 2 && len(o.id) > 2 && c.id[2:] != o.id[2:] {
		return c.id[2:] > o.id[2:]
	}
	return c.id > o.id
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(c.ms, 10) + ":" + c.id))
}

func decodePageToken(tok string) (*cursor, error) {
	if tok == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		msPart, id, ok := strings.Cut(string(b), ":")
		n, perr := strconv.ParseInt(msPart, 10, 64)
		if ok && perr == nil && id != "" {
			return &cursor{ms: n, id: id}, nil
		}
	}
	return nil, errorf(ErrInvalid, "page token %q is not one ListTasks returned", tok)
}

// refill reads the next batch of every source whose buffer ran dry, in one
// round trip. Entries at or after the page cursor are skipped.
func (s *Store) refill(ctx context.Context, srcs []*listSource, cur *cursor, batch int64) error {
	maxScore := "+inf"
	if cur != nil {
		maxScore = strconv.FormatInt(cur.ms, 10)
	}
	pipe := s.rdb.Pipeline()
	var reading []*listSource
	var cmds []*redis.ZSliceCmd
	for _, src := range srcs {
		if len(src.buf) > 0 || src.done {
			continue
		}
		reading = append(reading, src)
		cmds = append(cmds, pipe.ZRevRangeByScoreWithScores(ctx, src.key, &redis.ZRangeBy{
			Max: maxScore, Min: "-inf", Offset: src.offset, Count: batch,
		}))
	}
	if len(reading) == 0 {
		return nil
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return fmt.Errorf("store: list tasks: %w", err)
	}
	for i, src := range reading {
		zs := cmds[i].Val()
		src.offset += int64(len(zs))
		if int64(len(zs)) < batch {
			src.done = true
		}
		for _, z := range zs {
			id, _ := z.Member.(string)
			e := cursor{ms: int64(math.Round(z.Score)), id: id}
			if cur != nil && !cur.after(e) {
				continue // on this page or an earlier one
			}
			src.buf = append(src.buf, e)
		}
	}
	for _, src := range reading {
		if len(src.buf) == 0 && !src.done {
			// Every entry read was at or after the cursor (same ms): read on.
			return s.refill(ctx, srcs, cur, batch)
		}
	}
	return nil
}

// isDeadLetter reports whether t is a dead letter: FATAL_FAILURE because
// its last failure spent its attempts.
func isDeadLetter(t Task) bool {
	return t.State == atfv1.TaskState_TASK_STATE_FATAL_FAILURE && t.Error.GetAttemptsExhausted()
}
