package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/atfhq/atf/platform/consumer"
	"github.com/atfhq/atf/platform/executor"
	"github.com/atfhq/atf/platform/gctune"
	"github.com/atfhq/atf/platform/hsc"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
)

// newFlagSet returns a flag set for a command; after Parse, envDefaults
// fills flags not on the command line from ATF_* variables.
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("atf "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args, then sets every flag not given on the command line
// from its ATF_* environment variable (--heartbeat-interval is
// ATF_HEARTBEAT_INTERVAL).
func parse(fs *flag.FlagSet, args []string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := "ATF_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if serr := f.Value.Set(v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, serr)
			}
		}
	})
	return err
}

// timeoutFlags are the state-table timeouts every role shares.
type timeoutFlags struct {
	heartbeatInterval time.Duration
	heartbeatTimeout  time.Duration
	enqueueTimeout    time.Duration
	claimTimeout      time.Duration
	retention         time.Duration
	dispatchLead      time.Duration
}

func (t *timeoutFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&t.heartbeatInterval, "heartbeat-interval", executor.DefaultHeartbeatInterval, "how often an executor heartbeats each running task")
	fs.DurationVar(&t.heartbeatTimeout, "heartbeat-timeout", hsc.DefaultHeartbeatTimeout, "a running task without a heartbeat for this long runs again elsewhere (must exceed 3 heartbeat intervals)")
	fs.DurationVar(&t.enqueueTimeout, "enqueue-timeout", consumer.DefaultEnqueueTimeout, "an enqueued task not claimed for this long is pushed to its queue again")
	fs.DurationVar(&t.claimTimeout, "claim-timeout", consumer.DefaultClaimTimeout, "a claimed task not started for this long is enqueued again")
	fs.DurationVar(&t.retention, "retention", store.DefaultRetention, "a finished task, its key and its index entries are kept this long, then deleted")
	fs.DurationVar(&t.dispatchLead, "dispatch-lead", store.DefaultDispatchLead, "a scheduled task is enqueued this long before its execute_at and held by the executor until then, so that it starts on time (0: enqueued at execute_at)")
}

func (t *timeoutFlags) validate() error {
	if t.retention <= 0 {
		return fmt.Errorf("--retention %s must be positive: finished tasks are kept that long", t.retention)
	}
	if t.dispatchLead < 0 || t.dispatchLead > store.MaxDispatchLead {
		return fmt.Errorf("--dispatch-lead %s must be between 0 and %s: a task handed out early holds an execution slot until its time", t.dispatchLead, store.MaxDispatchLead)
	}
	if t.heartbeatTimeout <= 3*t.heartbeatInterval {
		return fmt.Errorf("--heartbeat-timeout %s must exceed three --heartbeat-interval (%s): an executor gives up after three failed heartbeats, and its tasks must not run elsewhere before that", t.heartbeatTimeout, 3*t.heartbeatInterval)
	}
	return nil
}

func (t *timeoutFlags) store() store.Timeouts {
	return store.Timeouts{Enqueue: t.enqueueTimeout, Claim: t.claimTimeout, Heartbeat: t.heartbeatTimeout}
}

// logFlags choose the log format and level.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts))), nil
	case "json":
		return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts))), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", l.format)
}

// gcFlags tune the Go garbage collector of a long-running command.
type gcFlags struct {
	headroomMB int
}

func (g *gcFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&g.headroomMB, "gc-headroom-mb", gctune.DefaultHeadroom>>20, "let the heap grow this many MiB between garbage collections while the live heap is smaller (fewer collections: less CPU per task, shorter latency tails); 0 keeps Go's default; ignored when GOGC is set")
}

// start runs the GC tuner (platform/gctune) until the returned stop is
// called; it does nothing when GOGC is set or the headroom is 0.
func (g *gcFlags) start(ctx context.Context, getenv func(string) string) (stop func()) {
	if getenv("GOGC") != "" || g.headroomMB <= 0 {
		return func() {}
	}
	return gctune.Start(ctx, 100, uint64(g.headroomMB)<<20, gctune.DefaultEvery)
}
