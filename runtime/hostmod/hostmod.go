package hostmod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/atfhq/atf/runtime/sandbox"
)

// ModuleName is the import module of the host functions. A later,
// incompatible ABI is a new module (atf_v2) next to this one.
const ModuleName = "atf_v1"

// Code is a host function's i32 result. Values >= 0 are successes (some
// functions return a count or an id); negative values are errors the guest
// handles. The values are part of the ABI (sdk/guest/ABI.md): never renumber.
type Code int32

const (
	OK Code = 0
	// CodeDenied: not allowed (an HTTP host outside allowed_hosts).
	CodeDenied Code = -1
	// CodeNotFound: no such key (kv_get, kv_delete) or lambda (schedule).
	CodeNotFound Code = -2
	// CodeTooLarge: a value, body or response over its limit.
	CodeTooLarge Code = -3
	// CodeInvalid: an argument value is wrong (level, percent, URL,
	// header, unknown span).
	CodeInvalid Code = -4
	// CodeUnavailable: the service failed or is not offered here (no KV
	// store in this sandbox, connection refused, ...). Retrying later may
	// work.
	CodeUnavailable Code = -5
	// CodeTimeout: the call's own timeout passed.
	CodeTimeout Code = -6
	// CodeLimit: a per-task budget is spent (log bytes, spans).
	CodeLimit Code = -7
)

func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case CodeDenied:
		return "denied"
	case CodeNotFound:
		return "not found"
	case CodeTooLarge:
		return "too large"
	case CodeInvalid:
		return "invalid argument"
	case CodeUnavailable:
		return "unavailable"
	case CodeTimeout:
		return "timeout"
	case CodeLimit:
		return "limit reached"
	}
	return fmt.Sprintf("code %d", int32(c))
}

// Errors a Services implementation returns to choose the guest's Code;
// any other error is CodeUnavailable (context deadlines are CodeTimeout).
var (
	ErrDenied      = errors.New("denied")
	ErrNotFound    = errors.New("not found")
	ErrTooLarge    = errors.New("too large")
	ErrInvalid     = errors.New("invalid argument")
	ErrUnavailable = errors.New("unavailable")
)

func codeOf(err error) Code {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, ErrDenied):
		return CodeDenied
	case errors.Is(err, ErrNotFound):
		return CodeNotFound
	case errors.Is(err, ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, ErrInvalid):
		return CodeInvalid
	case errors.Is(err, context.DeadlineExceeded):
		return CodeTimeout
	}
	return CodeUnavailable
}

// Services are the host functions that need the platform: the key-value
// store of the task's namespace and scheduling follow-up tasks. The
// executor's implementation calls the server's HostService.
type Services interface {
	KVGet(ctx context.Context, key string) (value []byte, found bool, err error)
	// KVSet stores value under key; ttl 0 keeps it until deleted.
	KVSet(ctx context.Context, key string, value []byte, ttl time.Duration) error
	KVDelete(ctx context.Context, key string) (found bool, err error)
	// Schedule schedules a task and returns its id.
	Schedule(ctx context.Context, f FollowUp) (taskID string, err error)
}

// FollowUp is a task a running task schedules.
type FollowUp struct {
	// Lambda to run; the caller fills in the task's own lambda when the
	// guest passes none.
	Lambda  string
	Payload []byte
	Delay   time.Duration
	// Key deduplicates, as in TaskService.Schedule.
	Key string
}

// Limits bound what one task may ask of the host. Zero fields take the
// defaults below.
type Limits struct {
	// MaxLogBytes is the total of log messages kept per task; default
	// 64 KiB. Past it, log returns CodeLimit and drops the line.
	MaxLogBytes int
	// MaxLogLine truncates one message; default 4 KiB.
	MaxLogLine int
	// MaxSpans is how many spans a task may start; default 256.
	MaxSpans int
	// MaxHTTPRequestBytes caps a request body; default 4 MiB.
	MaxHTTPRequestBytes int
	// MaxHTTPResponseBytes caps a response body; default 4 MiB: a larger
	// one is CodeTooLarge (nothing of it is returned).
	MaxHTTPResponseBytes int
	// HTTPTimeout applies when the guest passes timeout_ms 0, and caps
	// the timeouts it passes; default 30s.
	HTTPTimeout time.Duration
	// MaxKVKeyBytes (default 512) and MaxKVValueBytes (default 1 MiB).
	MaxKVKeyBytes   int
	MaxKVValueBytes int
	// MaxSchedulePayloadBytes caps a follow-up's payload; default 1 MiB
	// (the platform's payload limit).
	MaxSchedulePayloadBytes int
}

// Defaults of Limits.
const (
	DefaultMaxLogBytes          = 64 << 10
	DefaultMaxLogLine           = 4 << 10
	DefaultMaxSpans             = 256
	DefaultMaxHTTPRequestBytes  = 4 << 20
	DefaultMaxHTTPResponseBytes = 4 << 20
	DefaultHTTPTimeout          = 30 * time.Second
	DefaultMaxKVKeyBytes        = 512
	DefaultMaxKVValueBytes      = 1 << 20
	DefaultMaxSchedulePayload   = 1 << 20
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxLogBytes, DefaultMaxLogBytes)
	def(&l.MaxLogLine, DefaultMaxLogLine)
	def(&l.MaxSpans, DefaultMaxSpans)
	def(&l.MaxHTTPRequestBytes, DefaultMaxHTTPRequestBytes)
	def(&l.MaxHTTPResponseBytes, DefaultMaxHTTPResponseBytes)
	def(&l.MaxKVKeyBytes, DefaultMaxKVKeyBytes)
	def(&l.MaxKVValueBytes, DefaultMaxKVValueBytes)
	def(&l.MaxSchedulePayloadBytes, DefaultMaxSchedulePayload)
	if l.HTTPTimeout <= 0 {
		l.HTTPTimeout = DefaultHTTPTimeout
	}
	return l
}

// Task is what the host functions know of the task whose module calls
// them. The executor builds one per execution and puts it in the context
// it passes to sandbox.Run (WithTask); the host functions find it in the
// context of each call. Every field is optional: without a Task (or with
// the zero one) log and progress work, spans are children of whatever span
// the context holds, HTTP is denied and KV and schedule are unavailable.
//
// Exported fields must not change once the task runs.
type Task struct {
	TaskID    string
	Namespace string
	Lambda    string
	// AllowedHosts is the lambda's allowed_hosts: "example.com" (any
	// port), "example.com:8443" (that port), "*.example.com" (any
	// subdomain, not example.com itself). Empty: no outbound HTTP.
	AllowedHosts []string
	// Services backs kv_* and schedule; nil: CodeUnavailable.
	Services Services
	// Progress gets each progress report (0-100) and says whether the
	// task's cancellation was requested. Nil: ignored, never cancelled.
	Progress func(percent int) (cancelRequested bool)
	// Log gets each log line (after truncation, within MaxLogBytes), and
	// one warning from atf when the first call past MaxLogBytes is refused.
	Log func(level slog.Level, msg string)
	// HTTPClient makes the outbound requests; nil: one without proxies
	// or cookies. Its CheckRedirect is wrapped so that a redirect to a
	// host outside AllowedHosts is refused.
	HTTPClient *http.Client
	Limits     Limits
	// Env is the task's environment for task_env when the call's context
	// carries none (outside the sandbox). In the sandbox, task_env reads
	// sandbox.TaskEnv(ctx), the Job.Env that is also a command's WASI
	// environment, and Env is not used.
	Env map[string]string

	once   sync.Once
	mu     sync.Mutex
	limits Limits
	result []byte // the pending result read by result_read
	pos    int
	spans  map[int32]trace.Span
	nspans int
	logged int
	// droppedLogs counts the log calls refused past MaxLogBytes.
	droppedLogs int
}

// LogsDropped is how many log calls were refused (CodeLimit) because the
// task's log messages had reached Limits.MaxLogBytes. The first refusal
// also logs a warning through Log, so that the kept logs say where they
// stop.
func (t *Task) LogsDropped() int {
	t.init()
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.droppedLogs
}

func (t *Task) init() {
	t.once.Do(func() {
		t.limits = t.Limits.withDefaults()
		t.spans = map[int32]trace.Span{}
	})
}

// setResult replaces the pending result.
func (t *Task) setResult(b []byte) {
	t.mu.Lock()
	t.result, t.pos = b, 0
	t.mu.Unlock()
}

// Finish ends the spans the guest left open (with an error status); call
// it after the run. A task whose guest called no host function of atf_v1
// has no spans (nor their map: Finish does not make one).
func (t *Task) Finish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, s := range t.spans {
		s.SetStatus(codes.Error, "span not ended by the lambda")
		s.End()
		delete(t.spans, id)
	}
	t.result = nil
}

type taskKey struct{}

// WithTask returns ctx carrying t for the host functions.
func WithTask(ctx context.Context, t *Task) context.Context {
	return context.WithValue(ctx, taskKey{}, t)
}

// TaskFrom returns the Task of ctx: sandbox.Job.Host when it is a *Task,
// else the one WithTask put there, or nil.
func TaskFrom(ctx context.Context) *Task {
	if t, ok := sandbox.HostFrom(ctx).(*Task); ok {
		return t
	}
	t, _ := ctx.Value(taskKey{}).(*Task)
	return t
}

// taskOf returns the call's Task, or a fresh empty one.
func taskOf(ctx context.Context) *Task {
	t := TaskFrom(ctx)
	if t == nil {
		t = &Task{}
	}
	t.init()
	return t
}

// fn is one host function.
type fn struct {
	name    string
	params  []api.ValueType
	results []api.ValueType
	call    func(ctx context.Context, t *Task, g guestMem, stack []uint64)
}

const (
	i32t = api.ValueTypeI32
	i64t = api.ValueTypeI64
)

func n(t api.ValueType, k int) []api.ValueType {
	out := make([]api.ValueType, k)
	for i := range out {
		out[i] = t
	}
	return out
}

// functions is the whole atf_v1 module; each entry's ABI is in
// sdk/guest/ABI.md.
var functions = []fn{
	{"log", n(i32t, 3), n(i32t, 1), hostLog},
	{"progress", n(i32t, 1), n(i32t, 1), hostProgress},
	{"span_start", n(i32t, 3), n(i32t, 1), hostSpanStart},
	{"span_set_attribute", n(i32t, 5), n(i32t, 1), hostSpanSetAttribute},
	{"span_end", n(i32t, 4), n(i32t, 1), hostSpanEnd},
	{"http_request", n(i32t, 10), n(i32t, 1), hostHTTPRequest},
	{"result_read", n(i32t, 2), n(i32t, 1), hostResultRead},
	{"task_env", n(i32t, 4), n(i32t, 1), hostTaskEnv},
	{"kv_get", n(i32t, 3), n(i32t, 1), hostKVGet},
	{"kv_set", append(n(i32t, 4), i64t), n(i32t, 1), hostKVSet},
	{"kv_delete", n(i32t, 2), n(i32t, 1), hostKVDelete},
	{"schedule", append(append(n(i32t, 4), i64t), n(i32t, 3)...), n(i32t, 1), hostSchedule},
}

// Register is Instantiate as a sandbox.HostModule:
// sandbox.Config{HostModules: []sandbox.HostModule{hostmod.Register}}.
func Register(ctx context.Context, r wazero.Runtime) error {
	_, err := Instantiate(ctx, r)
	return err
}

// Instantiate registers the atf_v1 host module in r. Instantiate it once
// per runtime, before any module that imports it.
func Instantiate(ctx context.Context, r wazero.Runtime) (api.Closer, error) {
	b := r.NewHostModuleBuilder(ModuleName)
	for _, f := range functions {
		b.NewFunctionBuilder().
			WithGoModuleFunction(goFunc(f), f.params, f.results).
			WithName(f.name).
			Export(f.name)
	}
	return b.Instantiate(ctx)
}

// Signatures returns each atf_v1 function's parameter and result types,
// for checking a module's imports at upload.
func Signatures() map[string][2][]api.ValueType {
	out := make(map[string][2][]api.ValueType, len(functions))
	for _, f := range functions {
		out[f.name] = [2][]api.ValueType{f.params, f.results}
	}
	return out
}

func goFunc(f fn) api.GoModuleFunc {
	return func(ctx context.Context, m api.Module, stack []uint64) {
		g := memOf(f.name, m)
		f.call(ctx, taskOf(ctx), g, stack)
	}
}
