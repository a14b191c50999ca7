package executor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/types/known/durationpb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/internal/testmodules"
	"github.com/atfhq/atf/runtime/sandbox"
)

// BenchmarkExecute runs b.N no-op reactor tasks (an empty payload to
// reactor.wat) through an executor with 64 slots and a real sandbox:
// fetch, hold check, execute span and metrics (no-op providers, as Setup
// installs with tracing off), run with the atf_v1 services wired (to a
// Host the module never calls), report (through the result batcher: the
// fake HSC takes SetResults, as the real one and its client do). The
// controller, the HSC and the Host are fakes that cost next to nothing, so
// cpu-us/task (the process's CPU time per task, getrusage) is the
// executor's and the sandbox's share of the platform's CPU per task.
func BenchmarkExecute(b *testing.B) {
	// The API's default provider, delegating to none, would have every
	// task probe it (telemetry.Tracing): a cost no deployment pays.
	defer otel.SetTracerProvider(otel.GetTracerProvider())
	otel.SetTracerProvider(noop.NewTracerProvider())
	wasm := testmodules.WAT(b, "reactor")
	sum := sha256.Sum256(wasm)
	sha := hex.EncodeToString(sum[:])
	engine, err := sandbox.New(context.Background(), sandbox.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Close(context.Background())

	works := make([]*atfv1.Work, b.N)
	for i := range works {
		works[i] = &atfv1.Work{
			TaskId: "task-" + strconv.Itoa(i), Namespace: "default", Lambda: "noop", LambdaVersion: 1,
			ModuleSha256: sha, Attempt: 1, FencingToken: int64(i + 1), Slot: "s" + strconv.Itoa(i%16),
			Timeout: durationpb.New(time.Minute), MemoryMb: 16,
			Traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		}
	}
	ctl := &streamController{workQueue: workQueue{work: works}, wasm: wasm}
	status := &countingStatus{want: int64(b.N), done: make(chan struct{})}
	ex := New(Config{
		Controller: ctl, Status: status, Runner: engine, Slots: 64, Host: idleHost{},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	var run sync.WaitGroup
	defer func() { cancel(); run.Wait() }()

	cpu0 := processCPU(b)
	b.ResetTimer()
	run.Go(func() { _ = ex.Run(ctx) })
	<-status.done
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/task")
}

// streamController hands out its work as fast as it is asked for.
type streamController struct {
	workQueue
	wasm []byte
}

func (c *streamController) NextWork(ctx context.Context, req *atfv1.NextWorkRequest) (*atfv1.NextWorkResponse, error) {
	w := c.take(req.GetMaxTasks())
	if len(w) == 0 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &atfv1.NextWorkResponse{Work: w}, nil
}

func (c *streamController) GetModule(context.Context, *atfv1.GetModuleRequest) (*atfv1.GetModuleResponse, error) {
	return &atfv1.GetModuleResponse{Wasm: c.wasm}, nil
}

// countingStatus closes done once want results have come.
type countingStatus struct {
	got  atomic.Int64
	want int64
	done chan struct{}
}

func (s *countingStatus) Heartbeat(_ context.Context, req *atfv1.HeartbeatRequest) (*atfv1.HeartbeatResponse, error) {
	return &atfv1.HeartbeatResponse{Directives: make([]atfv1.Directive, len(req.GetBeats()))}, nil
}

func (s *countingStatus) SetResult(_ context.Context, req *atfv1.SetResultRequest) (*atfv1.SetResultResponse, error) {
	if req.GetOutcome() != atfv1.Outcome_OUTCOME_SUCCESS {
		panic("task failed: " + req.GetError().GetMessage())
	}
	if s.got.Add(1) == s.want {
		close(s.done)
	}
	return &atfv1.SetResultResponse{State: atfv1.TaskState_TASK_STATE_SUCCESS}, nil
}

func (s *countingStatus) SetResults(ctx context.Context, req *atfv1.SetResultsRequest) (*atfv1.SetResultsResponse, error) {
	res := &atfv1.SetResultsResponse{Answers: make([]*atfv1.SetResultAnswer, len(req.GetResults()))}
	for i, r := range req.GetResults() {
		a, _ := s.SetResult(ctx, r)
		res.Answers[i] = &atfv1.SetResultAnswer{State: a.GetState()}
	}
	return res, nil
}

// processCPU is the CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleHost is a Host no module calls (deployments always configure one).
type idleHost struct{ Host }
