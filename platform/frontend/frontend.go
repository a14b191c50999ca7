package frontend

import (
	"context"
	"time"

	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Defaults of Config.
const (
	DefaultMaxModuleBytes  = 64 << 20
	DefaultMaxPayloadBytes = 1 << 20
	DefaultMaxBatchBytes   = 16 << 20
	DefaultNamespace       = store.DefaultNamespace
)

// Store is what the frontend needs of the task store.
type Store interface {
	PutModule(ctx context.Context, sha256 string, wasm []byte) error
	DeployLambda(ctx context.Context, l store.Lambda) (store.Lambda, error)
	GetLambda(ctx context.Context, ns, name string) (store.Lambda, error)
	ListLambdas(ctx context.Context, ns string) ([]store.Lambda, error)
	DeleteLambda(ctx context.Context, ns, name string) error
	Schedule(ctx context.Context, t store.NewTask) (store.Task, bool, error)
	ScheduleBatch(ctx context.Context, ts []store.NewTask) ([]store.BatchResult, error)
	Pause(ctx context.Context, ns, name, collection string) error
	// ResumeFunc tells fn of the tasks it enqueued, for their spans.
	ResumeFunc(ctx context.Context, ns, name, collection string, fn func(ctx context.Context, tasks []store.Enqueued)) (int, error)
	Drop(ctx context.Context, ns, name, collection string) (int, error)
	SetSchedule(ctx context.Context, sc store.Schedule) error
	DeleteSchedule(ctx context.Context, ns, lambda string) error
	LambdaStates(ctx context.Context, ns string, names []string) ([]store.LambdaState, error)
	TaskVersion(ctx context.Context, ns, id string) (string, error)
	GetTask(ctx context.Context, ns, id string) (store.Task, error)
	ListTasks(ctx context.Context, f store.ListFilter) ([]store.Task, string, error)
	Cancel(ctx context.Context, ns, id string) (store.Task, error)
	Retry(ctx context.Context, ns, id string) (store.Task, error)
}

// Inspector validates uploaded modules; *sandbox.Engine is one.
type Inspector interface {
	Inspect(ctx context.Context, wasm []byte) (sandbox.Info, error)
}

// Config configures a Frontend.
type Config struct {
	Store     Store
	Inspector Inspector
	// MaxModuleBytes caps an uploaded module. Default 64 MiB.
	MaxModuleBytes int
	// MaxPayloadBytes caps a task's payload. Default 1 MiB.
	MaxPayloadBytes int
	// MaxBatchBytes caps the payloads of one ScheduleBatch together.
	// Default 16 MiB.
	MaxBatchBytes int
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.MaxModuleBytes <= 0 {
		c.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if c.MaxPayloadBytes <= 0 {
		c.MaxPayloadBytes = DefaultMaxPayloadBytes
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Frontend implements atfv1connect.LambdaServiceHandler and
// atfv1connect.TaskServiceHandler, and serves the REST routes.
type Frontend struct {
	cfg     Config
	lambdas lambdaCache // for Schedule and ScheduleBatch
}

// New returns a Frontend.
func New(cfg Config) *Frontend {
	return &Frontend{cfg: cfg.withDefaults()}
}

// namespace is the namespace a call acts in. Until API tokens map callers
// to their own, every caller is in DefaultNamespace.
func namespace(context.Context) string { return DefaultNamespace }
