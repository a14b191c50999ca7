package store

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// Task hash fields. Short names: a busy store holds millions of hashes.
const (
	fNamespace   = "ns"  // none: DefaultNamespace
	fLambda      = "lam" // this, max and q: tasks stored before work version 2
	fVersion     = "lv"  // lambda version and time of the current/last claim: claimVersion
	fState       = "st"  // atf.v1.TaskState number
	fAttempt     = "att" // attempts started (1 = first run); none: the token's
	fMaxAttempts = "max"
	fPriority    = "pri" // this and xa, ca, tp, pl: tasks stored before fWork
	fKey         = "key"
	fCollection  = "col"
	fQueue       = "q" // the queue key the task is pushed to
	fPayload     = "pl"
	fExecuteAt   = "xa" // ms
	fCreatedAt   = "ca" // ms
	fEnqueuedAt  = "ea" // ms
	fStartedAt   = "sa" // ms
	fFinishedAt  = "fa" // ms, then " <dur>" when finished by a first attempt's success: finishedAt
	fUpdatedAt   = "ua" // ms
	fRetryAt     = "ra" // ms
	fHeartbeatAt = "hb" // ms, last heartbeat
	fProgress    = "pg"
	fError       = "err" // atf.v1.TaskError, proto binary
	fOutput      = "out"
	fTruncated   = "otr" // "1" when the output was cut
	fDuration    = "dur" // microseconds
	fTraceParent = "tp"
	fToken       = "tok" // fencing token of the current claim
	fCancelReq   = "cr"  // "1" when cancel was requested while running
	fParked      = "pk"  // "1" while parked by a pause (gate.go)
	fRequeuedAt  = "rq"  // ms, when Retry or Resume last enqueued it
	fWork        = "w"   // what never changes and the hot scripts do not read: workBlob
)

// workBlob packs the fields of a new task that never change and that the
// hot scripts do not read — lambda, max attempts, priority, execute_at,
// created, traceparent, payload — into the one field "w": each field of a
// hash costs redis-server a conversion, a listpack search and an AOF entry
// (~3k instructions) wherever a script writes or reads it, and the claim
// returns all of these. The namespace stays a field of its own: the
// owner checks read it without the payload; a task of the default
// namespace has none (namespaceOf), one field less to write.
//
//	0x02 lambda 0x00 max-attempts (decimal) 0x00
//	uvarint(priority) uvarint(execute_at ms) uvarint(created ms)
//	uvarint(len(traceparent)) traceparent payload...
//
// The scripts that need a task's lambda or max attempts read them from its
// text head (luaPrelude's lam_max). Tasks stored by earlier versions keep
// working: version 0x01 lacks the head (lambda, max attempts and the queue
// key "q" were fields), and before any work field its contents were
// fields too ("pri", "pl", "tp", "xa", "ca"). The first byte tells a work
// field from a traceparent ("00-..."), which the consumer's and resume's
// scripts return in its place for the oldest tasks.
//
// Version 0x03 is version 0x02 of a task enqueued when it was created
// (due then): it has no enqueued-at field ("ea") until something enqueues
// it again, and reads as enqueued when created — one field less for the
// schedule to write. Retry, sending one back to wait as NEW, writes "ea"
// "0" (not enqueued).
const (
	workVersion1        = 0x01
	workVersion         = 0x02
	workVersionEnqueued = 0x03
)

func workBlob(lambda string, maxAttempts, priority int, executeAt, created time.Time, enqueued bool, traceparent string, payload []byte) string {
	b := make([]byte, 0, 1+len(lambda)+1+20+3*binary.MaxVarintLen64+binary.MaxVarintLen16+len(traceparent)+len(payload))
	if enqueued {
		b = append(b, workVersionEnqueued)
	} else {
		b = append(b, workVersion)
	}
	b = append(b, lambda...)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(maxAttempts), 10)
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(priority))
	b = binary.AppendUvarint(b, uint64(executeAt.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(created.UnixMilli()))
	b = binary.AppendUvarint(b, uint64(len(traceparent)))
	b = append(b, traceparent...)
	b = append(b, payload...)
	return string(b)
}

// isWork reports whether a field value is a work field of any version.
func isWork(v string) bool {
	return v != "" && (v[0] == workVersion || v[0] == workVersionEnqueued || v[0] == workVersion1)
}

// work is a decoded workBlob. Its strings share the blob's memory. lambda
// is "" (and maxAttempts 0) for a version 1 field.
type work struct {
	lambda               string
	maxAttempts          int
	enqueuedWhenCreated  bool // version 0x03
	priority             int
	executeAt, createdAt time.Time
	traceparent, payload string
}

func decodeWork(s string) (work, error) {
	var w work
	if !isWork(s) {
		return w, fmt.Errorf("store: task work field: unknown encoding")
	}
	rest := s[1:]
	w.enqueuedWhenCreated = s[0] == workVersionEnqueued
	if s[0] != workVersion1 {
		lam, after, ok := strings.Cut(rest, "\x00")
		maxText, body, ok2 := strings.Cut(after, "\x00")
		max, err := strconv.Atoi(maxText)
		if !ok || !ok2 || err != nil || lam == "" {
			return w, fmt.Errorf("store: task work field: malformed head")
		}
		w.lambda, w.maxAttempts, rest = lam, max, body
	}
	var v [4]uint64
	for i := range v {
		n, k := binary.Uvarint([]byte(rest[:min(len(rest), binary.MaxVarintLen64)]))
		if k <= 0 {
			return w, fmt.Errorf("store: task work field: truncated")
		}
		v[i], rest = n, rest[k:]
	}
	if v[3] > uint64(len(rest)) {
		return w, fmt.Errorf("store: task work field: truncated traceparent")
	}
	w.priority = int(v[0])
	w.executeAt, w.createdAt = time.UnixMilli(int64(v[1])).UTC(), time.UnixMilli(int64(v[2])).UTC()
	w.traceparent, w.payload = rest[:v[3]], rest[v[3]:]
	return w, nil
}

// fill sets the task's fields that w holds.
func (w work) fill(t *Task) {
	if w.lambda != "" {
		t.Lambda, t.MaxAttempts = w.lambda, w.maxAttempts
	}
	t.Priority, t.ExecuteAt, t.CreatedAt, t.TraceParent = w.priority, w.executeAt, w.createdAt, w.traceparent
	t.Payload = nil
	if w.payload != "" {
		t.Payload = []byte(w.payload)
	}
}

// traceParentOf is the traceparent in a script's reply that gives the
// work field or, for a task stored before it existed, the traceparent.
func traceParentOf(v string) string {
	if !isWork(v) {
		return v
	}
	w, _ := decodeWork(v)
	return w.traceparent
}

// claimVersion is the "lv" field: "<lambda version> <claimed at (ms)>".
// A claim writes these two and the token, and neither "ua" nor, until
// something sets the attempt apart from the token, "att" (a field written
// costs redis-server ~4k instructions): the task was last updated when it
// was claimed, unless a later time says otherwise, and an attempt not
// stored is the token (claims raise both by one; the consumer and Retry,
// which set them apart, write it). A claim by an earlier version wrote the
// version alone, and "ua" and "att".
type claimVersion struct {
	version int64
	at      time.Time
}

func parseClaimVersion(lv string) claimVersion {
	v, at, _ := strings.Cut(lv, " ")
	return claimVersion{version: atoi64(v), at: msTime(at)}
}

// namespaceOf is the namespace of a task whose "ns" field is v: a task of
// the default namespace has none.
func namespaceOf(v string) string { return cmp.Or(v, DefaultNamespace) }

// finishedAt reads "fa": the finish time (ms), followed by the execution's
// duration (microseconds) when a first attempt's success wrote it — that
// way takes one field less to write than "fa" and "dur" ("dur" is there
// when it is not).
func finishedAt(fa string) (at time.Time, dur string, ok bool) {
	ms, dur, ok := strings.Cut(fa, " ")
	return msTime(ms), dur, ok
}

// decodeTask reads a task hash. id is the task's id (not stored in it).
func decodeTask(id string, h map[string]string) (Task, error) {
	claimed := parseClaimVersion(h[fVersion])
	finished, faDur, faRan := finishedAt(h[fFinishedAt])
	dur, ran := h[fDuration]
	if !ran {
		dur, ran = faDur, faRan
	}
	t := Task{
		ID:              id,
		Namespace:       namespaceOf(h[fNamespace]),
		Lambda:          h[fLambda],
		LambdaVersion:   claimed.version,
		State:           atfv1.TaskState(atoi64(h[fState])),
		Attempt:         int(atoi64(cmp.Or(h[fAttempt], h[fToken]))),
		MaxAttempts:     int(atoi64(h[fMaxAttempts])),
		Priority:        int(atoi64(h[fPriority])),
		Key:             h[fKey],
		Collection:      h[fCollection],
		ExecuteAt:       msTime(h[fExecuteAt]),
		CreatedAt:       msTime(h[fCreatedAt]),
		EnqueuedAt:      msTime(h[fEnqueuedAt]),
		StartedAt:       msTime(h[fStartedAt]),
		FinishedAt:      finished,
		UpdatedAt:       msTime(h[fUpdatedAt]), // or later: see below
		RetryAt:         msTime(h[fRetryAt]),
		Progress:        int(atoi64(h[fProgress])),
		OutputTruncated: h[fTruncated] == "1",
		Duration:        time.Duration(atoi64(dur)) * time.Microsecond,
		TraceParent:     h[fTraceParent],
		LastExecution:   h[fLastExecution],
		Token:           atoi64(h[fToken]),
		CancelRequested: h[fCancelReq] == "1",
		Parked:          h[fParked] == "1",
		RequeuedAt:      msTime(h[fRequeuedAt]),
	}
	if v, ok := h[fWork]; ok {
		w, err := decodeWork(v)
		if err != nil {
			return t, fmt.Errorf("store: task %s: %w", id, err)
		}
		w.fill(&t)
		if _, ok := h[fEnqueuedAt]; !ok && w.enqueuedWhenCreated {
			t.EnqueuedAt = t.CreatedAt
		}
	} else if v := h[fPayload]; v != "" { // stored before the work field
		t.Payload = []byte(v)
	}
	// A task finished by its first result without ever heartbeating has
	// no "sa": it started its duration before it finished (in whole
	// milliseconds, rounded up: never before its real start).
	if ran && t.StartedAt.IsZero() && !t.FinishedAt.IsZero() {
		t.StartedAt = t.FinishedAt.Add(-t.Duration.Truncate(time.Millisecond))
	}
	// A write that sets another time leaves "ua" out when it equals that
	// time (creation, claim, finish): updated is the latest of them.
	for _, at := range [...]time.Time{t.CreatedAt, claimed.at, t.FinishedAt} {
		if at.After(t.UpdatedAt) {
			t.UpdatedAt = at
		}
	}
	if v, ok := h[fOutput]; ok && v != "" {
		t.Output = []byte(v)
	}
	if v := h[fError]; v != "" {
		e := &atfv1.TaskError{}
		if err := proto.Unmarshal([]byte(v), e); err != nil {
			return t, fmt.Errorf("store: task %s: decode error field: %w", id, err)
		}
		t.Error = e
	}
	return t, nil
}

// pairsToMap turns a script's flat HGETALL reply into a map.
func pairsToMap(v any) (map[string]string, error) {
	list, ok := v.([]any)
	if !ok || len(list)%2 != 0 {
		return nil, fmt.Errorf("store: unexpected script reply %T", v)
	}
	m := make(map[string]string, len(list)/2)
	for i := 0; i < len(list); i += 2 {
		k, _ := list[i].(string)
		val, _ := list[i+1].(string)
		m[k] = val
	}
	return m, nil
}

func encodeError(e *atfv1.TaskError) (string, error) {
	if e == nil {
		return "", nil
	}
	b, err := proto.Marshal(e)
	if err != nil {
		return "", fmt.Errorf("store: encode task error: %w", err)
	}
	return string(b), nil
}

// exhausted is e (or an empty error) marked as the last attempt's.
func exhausted(e *atfv1.TaskError) *atfv1.TaskError {
	if e == nil {
		return &atfv1.TaskError{AttemptsExhausted: true}
	}
	c := proto.Clone(e).(*atfv1.TaskError)
	c.AttemptsExhausted = true
	return c
}

// Lambda hash fields.
const (
	lName            = "name"
	lVersion         = "v"
	lSHA256          = "sha"
	lSize            = "size"
	lABI             = "abi"
	lTimeout         = "tmo" // ms
	lMemoryMB        = "mem"
	lMaxAttempts     = "max"
	lMaxConcurrency  = "conc"
	lAllowedHosts    = "hosts" // JSON array
	lRetryBackoff    = "rb"    // ms
	lRetryBackoffMax = "rbm"   // ms
	lImports         = "imp"   // JSON array
	lMaxOutputBytes  = "mout"
	lMaxLogBytes     = "mlog"
	lCreatedAt       = "ca" // ms
	lUpdatedAt       = "ua" // ms
)

func encodeLambda(l Lambda) ([]any, error) {
	hosts, err := json.Marshal(nonNil(l.AllowedHosts))
	if err != nil {
		return nil, err
	}
	imports, err := json.Marshal(nonNil(l.Imports))
	if err != nil {
		return nil, err
	}
	return []any{
		lName, l.Name,
		lSHA256, l.SHA256,
		lSize, strconv.FormatInt(l.SizeBytes, 10),
		lABI, strconv.Itoa(int(l.ABI)),
		lTimeout, durMS(l.Timeout),
		lMemoryMB, strconv.Itoa(l.MemoryMB),
		lMaxAttempts, strconv.Itoa(l.MaxAttempts),
		lMaxConcurrency, strconv.Itoa(l.MaxConcurrency),
		lAllowedHosts, string(hosts),
		lRetryBackoff, durMS(l.RetryBackoff),
		lRetryBackoffMax, durMS(l.RetryBackoffMax),
		lImports, string(imports),
		lMaxOutputBytes, strconv.Itoa(l.MaxOutputBytes),
		lMaxLogBytes, strconv.Itoa(l.MaxLogBytes),
	}, nil
}

func decodeLambda(ns string, h map[string]string) (Lambda, error) {
	l := Lambda{
		Namespace:       ns,
		Name:            h[lName],
		Version:         atoi64(h[lVersion]),
		SHA256:          h[lSHA256],
		SizeBytes:       atoi64(h[lSize]),
		ABI:             atfv1.Abi(atoi64(h[lABI])),
		Timeout:         time.Duration(atoi64(h[lTimeout])) * time.Millisecond,
		MemoryMB:        int(atoi64(h[lMemoryMB])),
		MaxAttempts:     int(atoi64(h[lMaxAttempts])),
		MaxConcurrency:  int(atoi64(h[lMaxConcurrency])),
		RetryBackoff:    time.Duration(atoi64(h[lRetryBackoff])) * time.Millisecond,
		RetryBackoffMax: time.Duration(atoi64(h[lRetryBackoffMax])) * time.Millisecond,
		// Lambdas deployed before these limits existed have the defaults.
		MaxOutputBytes: cmp.Or(int(atoi64(h[lMaxOutputBytes])), DefaultMaxOutputBytes),
		MaxLogBytes:    cmp.Or(int(atoi64(h[lMaxLogBytes])), DefaultMaxLogBytes),
		CreatedAt:      msTime(h[lCreatedAt]),
		UpdatedAt:      msTime(h[lUpdatedAt]),
	}
	if v := h[lAllowedHosts]; v != "" && v != "[]" {
		if err := json.Unmarshal([]byte(v), &l.AllowedHosts); err != nil {
			return l, fmt.Errorf("store: lambda %q: decode allowed hosts: %w", l.Name, err)
		}
	}
	if v := h[lImports]; v != "" && v != "[]" {
		if err := json.Unmarshal([]byte(v), &l.Imports); err != nil {
			return l, fmt.Errorf("store: lambda %q: decode imports: %w", l.Name, err)
		}
	}
	return l, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func atoi64(s string) int64 {
	if s == "" { // an unset field: no error to allocate
		return 0
	}
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// msTime reads unix milliseconds; "" or "0" is the zero time.
func msTime(s string) time.Time {
	n := atoi64(s)
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}
