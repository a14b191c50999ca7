package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// ClaimRequest asks to claim one popped task for a lambda version.
type ClaimRequest struct {
	TaskID        string
	LambdaVersion int64
}

// Claim moves popped tasks from ENQUEUED to CLAIMED: attempt and fencing
// token go up by one, the lambda version is recorded, and a task not
// started by now + claimTimeout is enqueued again (its trigger moves
// there, or stays at its enqueue timeout when that comes no later: the
// consumer then finds the claim alive and moves it; ProcessDue). Tasks
// that are not ENQUEUED (cancelled, claimed already, a duplicate queue
// entry, gone, malformed ids) are skipped silently. One round trip.
//
// A returned task carries what an execution needs: id, namespace, lambda
// and the claimed version, state, priority, attempt and max attempts,
// fencing token, payload, trace context, last execution, execute,
// created and enqueued times, RequeuedAt, updated = now. Not the
// previous attempt's output or error, nor the other times: GetTask reads
// those.
func (s *Store) Claim(ctx context.Context, claims []ClaimRequest, claimTimeout time.Duration) ([]Task, error) {
	now := s.now()
	deadline, wake := ms(now.Add(claimTimeout)), wakeFor(now, now.Add(claimTimeout))
	reqs := make([]ClaimRequest, 0, len(claims))
	parts := make([]int, 0, len(claims))
	for _, c := range claims {
		p, err := s.PartitionOf(c.TaskID)
		if err != nil {
			continue
		}
		reqs = append(reqs, c)
		parts = append(parts, p)
	}
	if len(reqs) == 0 {
		return []Task{}, nil
	}
	groups := s.scriptGroups(len(reqs), func(i int) int { return parts[i] })
	calls := make([]scriptCall, len(groups))
	for g, idx := range groups {
		args := make([]any, 0, 6+len(idx))
		args = append(args, ms(now), deadline, wake, s.opts.EnqueueTimeout.Milliseconds())
		for run := range runs(idx, func(i int) int64 { return reqs[i].LambdaVersion }) {
			args = append(args, reqs[run[0]].LambdaVersion, len(run))
			for _, i := range run {
				args = append(args, reqs[i].TaskID)
			}
		}
		calls[g] = scriptCall{keys: []string{triggerKey(parts[idx[0]])}, args: args}
	}
	cmds, err := s.runPipelined(ctx, claimScript, calls)
	if err != nil {
		return nil, fmt.Errorf("store: claim: %w", err)
	}
	// In the order asked (a cluster's groups are by partition).
	replies := make([][]any, len(reqs)) // a claimed task's elements; nil: skipped
	for g, idx := range groups {
		res, ok := cmds[g].Val().([]any)
		if !ok {
			return nil, fmt.Errorf("store: claim: unexpected script reply %T", cmds[g].Val())
		}
		for _, i := range idx {
			if len(res) == 0 {
				return nil, fmt.Errorf("store: claim: script reply ended before task %s", reqs[i].TaskID)
			}
			if _, skipped := res[0].(int64); skipped {
				res = res[1:]
				continue
			}
			head, _ := res[0].(string)
			extra, _, _ := strings.Cut(head, " ")
			n := 2 + int(atoi64(extra))
			if n > len(res) {
				return nil, fmt.Errorf("store: claim %s: unexpected script reply %v", reqs[i].TaskID, res)
			}
			replies[i], res = res[:n:n], res[n:]
		}
		if len(res) != 0 {
			return nil, fmt.Errorf("store: claim: %d script reply elements left over", len(res))
		}
	}
	out := make([]Task, 0, len(reqs))
	for i, r := range replies {
		if r == nil {
			continue
		}
		t, err := decodeClaimed(reqs[i], r, now)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// decodeClaimed reads claimScript's reply for a claimed task. EnqueuedAt
// and LastExecution are known for a task claimed before (the script reads
// them only then).
func decodeClaimed(req ClaimRequest, r []any, now time.Time) (Task, error) {
	var head []string
	if len(r) == 2 || len(r) == 4 || len(r) == 9 {
		h, _ := r[0].(string)
		head = strings.SplitN(h, " ", 7)[1:] // after the count of values after the work field
	}
	if len(head) != 6 {
		return Task{}, fmt.Errorf("store: claim %s: unexpected script reply %v", req.TaskID, r)
	}
	str := func(v any) string { s, _ := v.(string); return s }
	t := Task{
		ID:            req.TaskID,
		Namespace:     namespaceOf(head[5]),
		LambdaVersion: req.LambdaVersion,
		State:         atfv1.TaskState_TASK_STATE_CLAIMED,
		Attempt:       int(atoi64(head[0])),
		Token:         atoi64(head[1]),
		EnqueuedAt:    msTime(head[2]),
		RequeuedAt:    msTime(head[3]),
		LastExecution: head[4],
		UpdatedAt:     now.Truncate(time.Millisecond).UTC(),
	}
	if len(r) > 2 { // stored by an earlier version: v1ClaimFields
		t.Lambda, t.MaxAttempts = str(r[2]), int(atoi64(str(r[3])))
	}
	if len(r) < 9 {
		w, err := decodeWork(str(r[1]))
		if err != nil {
			return Task{}, fmt.Errorf("store: claim %s: %w", req.TaskID, err)
		}
		w.fill(&t)
		return t, nil
	}
	old := r[4:] // oldClaimFields
	t.Priority = int(atoi64(str(old[0])))
	if pl := str(old[1]); pl != "" {
		t.Payload = []byte(pl)
	}
	t.TraceParent, t.ExecuteAt, t.CreatedAt = str(old[2]), msTime(str(old[3])), msTime(str(old[4]))
	return t, nil
}

// Heartbeat extends running tasks' claims and answers one directive per
// beat, in order: CLAIM_LOST when the token is not the current claim or
// the task is not CLAIMED/PROCESSING (CANCEL when it ended CANCELLED);
// CANCEL when cancel was requested; else CONTINUE, after moving CLAIMED to
// PROCESSING (StartedAt set on the first beat), storing progress (when
// >= 0) and setting the next trigger to now + heartbeatTimeout. One round
// trip.
func (s *Store) Heartbeat(ctx context.Context, beats []Beat, heartbeatTimeout time.Duration) ([]atfv1.Directive, error) {
	now := s.now()
	deadline, wake := ms(now.Add(heartbeatTimeout)), wakeFor(now, now.Add(heartbeatTimeout))
	out := make([]atfv1.Directive, len(beats))
	calls := make([]scriptCall, 0, len(beats))
	slot := make([]int, 0, len(beats))
	for i, b := range beats {
		p, err := s.PartitionOf(b.TaskID)
		if err != nil {
			out[i] = atfv1.Directive_DIRECTIVE_CLAIM_LOST
			continue
		}
		calls = append(calls, scriptCall{
			keys: []string{taskKey(p, b.TaskID), triggerKey(p)},
			args: []any{b.TaskID, b.Token, b.Progress, ms(now), deadline, wake, p},
		})
		slot = append(slot, i)
	}
	if len(calls) == 0 {
		return out, nil
	}
	cmds, err := s.runPipelined(ctx, heartbeatScript, calls)
	if err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	for j, c := range cmds {
		n, _ := c.Val().(int64)
		out[slot[j]] = atfv1.Directive(n)
	}
	return out, nil
}

// SetResult records an execution's outcome and returns the task's new
// state. It is accepted only from the current claim: when the token is not
// the task's or the task is not CLAIMED/PROCESSING, nothing changes and
// the error is ErrClaimLost.
//
// SUCCESS, FATAL and CANCELLED end the task in that state. RETRY makes it
// RETRIABLE_FAILURE, due again at r.RetryAt, or FATAL_FAILURE (a dead
// letter, Error.AttemptsExhausted set) when it has used its max attempts.
// A finished task leaves the trigger set and is kept, with its key's
// mapping, for the retention (TrimIndexes).
func (s *Store) SetResult(ctx context.Context, r Result) (atfv1.TaskState, error) {
	op, err := s.newResultOp(&r)
	if err != nil {
		return 0, err
	}
	if err := s.results.Do(ctx, op); err != nil {
		return 0, fmt.Errorf("store: set result of task %s: %w", r.TaskID, err)
	}
	return s.resultDone(ctx, op)
}

// ResultAnswer is what SetResults answers for one result: the task's new
// state, or the error SetResult would have returned.
type ResultAnswer struct {
	State atfv1.TaskState
	Err   error
}

// SetResults records several executions' outcomes, each as SetResult
// would, in one round trip (one script call, or one per partition group on
// a cluster), and answers each in order. A caller that holds results
// finishing together (the HSC's SetResults) saves the wait for a shared
// flush that each SetResult makes.
func (s *Store) SetResults(ctx context.Context, rs []Result) []ResultAnswer {
	out := make([]ResultAnswer, len(rs))
	ops := make([]*resultOp, 0, len(rs))
	idx := make([]int, 0, len(rs))
	for i := range rs {
		op, err := s.newResultOp(&rs[i])
		if err != nil {
			out[i].Err = err
			continue
		}
		ops, idx = append(ops, op), append(idx, i)
	}
	if len(ops) > 0 {
		s.setResults(ctx, ops)
	}
	for j, op := range ops {
		out[idx[j]].State, out[idx[j]].Err = s.resultDone(ctx, op)
	}
	return out
}

// newResultOp checks a result and lays it out for setResultScript.
func (s *Store) newResultOp(r *Result) (*resultOp, error) {
	switch r.Outcome {
	case atfv1.Outcome_OUTCOME_SUCCESS, atfv1.Outcome_OUTCOME_RETRY,
		atfv1.Outcome_OUTCOME_FATAL, atfv1.Outcome_OUTCOME_CANCELLED:
	default:
		return nil, errorf(ErrInvalid, "task %s: unknown outcome %s", r.TaskID, r.Outcome)
	}
	p, err := s.PartitionOf(r.TaskID)
	if err != nil {
		return nil, err
	}
	errBlob, err := encodeError(r.Error)
	if err != nil {
		return nil, err
	}
	return &resultOp{r: r, p: p, errBlob: errBlob}, nil
}

// resultDone is the outcome of a result that has run: its new state, and
// its slot of a capped lambda freed; or its error.
func (s *Store) resultDone(ctx context.Context, op *resultOp) (atfv1.TaskState, error) {
	r := op.r
	if op.err != nil {
		return 0, fmt.Errorf("store: set result of task %s: %w", r.TaskID, op.err)
	}
	st := op.state
	if st > 0 && r.Slot != "" {
		// On failure the slot's lease frees it later; the result stands.
		_ = s.Release(ctx, r.Slot, r.TaskID)
	}
	if st < 0 {
		cur := "gone"
		if c := -1 - st; c != 0 {
			cur = atfv1.TaskState(c).String()
		}
		return 0, errorf(ErrClaimLost, "task %s: claim lost: token %d is not the current claim (task is %s)", r.TaskID, r.Token, cur)
	}
	return atfv1.TaskState(st), nil
}

// resultOp is one SetResult in a batch of setResultScript: its result,
// and once run, the script's answer for it or the batch's error.
type resultOp struct {
	r       *Result
	p       int
	errBlob string
	state   int64
	err     error
}

// appendResultArgs appends setResultScript's arguments for one result:
// those that are empty or default are left out.
func appendResultArgs(args []any, r *Result, errBlob string) []any {
	var code [5]byte
	c := append(code[:0], byte('0'+r.Outcome))
	if r.OutputTruncated {
		c = append(c, 't')
	}
	if len(r.Output) > 0 {
		c = append(c, 'o')
	}
	if errBlob != "" {
		c = append(c, 'e')
	}
	if !r.RetryAt.IsZero() {
		c = append(c, 'r')
	}
	args = append(args, r.TaskID, r.Token, string(c), r.Duration.Microseconds())
	if len(r.Output) > 0 {
		args = append(args, r.Output)
	}
	if errBlob != "" {
		args = append(args, errBlob)
	}
	if !r.RetryAt.IsZero() {
		args = append(args, r.RetryAt.UnixMilli())
	}
	return args
}

// setResults runs a batch of results: one script call per partition group
// (one on a standalone server), all in one round trip.
func (s *Store) setResults(ctx context.Context, ops []*resultOp) {
	now := s.now()
	nowMS := now.UnixMilli()
	groups := s.scriptGroups(len(ops), func(i int) int { return ops[i].p })
	calls := make([]scriptCall, len(groups))
	for g, idx := range groups {
		args := make([]any, 0, 3+4*len(idx))
		args = append(args, nowMS, (MaxSweep + time.Second).Milliseconds(), wakeChannel)
		for _, i := range idx {
			args = appendResultArgs(args, ops[i].r, ops[i].errBlob)
		}
		calls[g] = scriptCall{keys: []string{triggerKey(ops[idx[0]].p)}, args: args}
	}
	cmds, err := s.runPipelined(ctx, setResultScript, calls)
	for g, idx := range groups {
		var res []any
		gerr := err
		if cmds != nil && cmds[g] != nil {
			if gerr = cmds[g].Err(); gerr == nil {
				res, _ = cmds[g].Val().([]any)
				if len(res) != len(idx) {
					gerr = fmt.Errorf("unexpected script reply %v for %d results", cmds[g].Val(), len(idx))
				}
			}
		}
		for j, i := range idx {
			if gerr != nil {
				ops[i].err = gerr
				continue
			}
			if ops[i].state, _ = res[j].(int64); ops[i].state == 0 {
				ops[i].err = fmt.Errorf("unexpected script reply %v for result %d", res[j], j)
			}
		}
	}
}
