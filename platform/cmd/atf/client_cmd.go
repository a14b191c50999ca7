package main

// Client commands for people: `atf lambda …` and `atf task …` call a
// running atf server over Connect and print what it answers as JSON.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/gen/atf/v1/atfv1connect"
)

const clientUsage = `Usage:
  atf lambda deploy NAME FILE.wasm [--timeout 30s] [--memory-mb 128] [--max-attempts 3] [--max-concurrency 0]
                    [--max-output-bytes 1048576] [--max-log-bytes 16777216]
  atf lambda list | get NAME | delete NAME | pause NAME [--collection C] | resume NAME [--collection C]
  atf task schedule LAMBDA [--payload TEXT | --payload-file FILE | -] [--at 30s|RFC3339] [--priority N] [--key K] [--collection C] [--wait]
  atf task get ID | cancel ID | retry ID | watch ID | list LAMBDA [--state S] [--collection C]

Every command takes --server URL (default http://127.0.0.1:8080, or ATF_SERVER).
`

// client is what the client commands share.
type client struct {
	lambdas atfv1connect.LambdaServiceClient
	tasks   atfv1connect.TaskServiceClient
	stdout  io.Writer
}

// clientFlags parses a client command's flags (which may follow its
// positional arguments) and returns the positional ones.
func clientFlags(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) (*client, []string, error) {
	server := fs.String("server", "http://127.0.0.1:8080", "URL of the atf server")
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if v := getenv("ATF_SERVER"); v != "" && !flagGiven(fs, "server") {
		*server = v
	}
	return &client{
		lambdas: atfv1connect.NewLambdaServiceClient(http.DefaultClient, *server),
		tasks:   atfv1connect.NewTaskServiceClient(http.DefaultClient, *server),
		stdout:  stdout,
	}, pos, nil
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

func (c *client) print(m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	// protojson varies its whitespace on purpose; print one stable form.
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = c.stdout.Write(out.Bytes())
	return err
}

// clientError makes a Connect error read like the HTTP API's.
func clientError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return fmt.Errorf("%s: %s", ce.Code(), ce.Message())
	}
	return err
}

func wantArgs(pos []string, n int, usage string) error {
	if len(pos) != n {
		return fmt.Errorf("usage: atf %s", usage)
	}
	return nil
}

func runLambda(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, clientUsage)
		return errors.New("atf lambda: no subcommand")
	}
	fs := newFlagSet("lambda "+args[0], stderr)
	timeout := fs.Duration("timeout", 0, "deploy: wall-clock limit of one execution (default 30s)")
	memoryMB := fs.Int("memory-mb", 0, "deploy: linear memory cap in MiB (default 128)")
	attempts := fs.Int("max-attempts", 0, "deploy: executions before a task is a dead letter (default 3)")
	concurrency := fs.Int("max-concurrency", 0, "deploy: tasks running at once across executors (0: no cap)")
	maxOutput := fs.Int("max-output-bytes", 0, "deploy: most bytes one execution may write to stdout (default 1 MiB, at most 16 MiB)")
	maxLog := fs.Int("max-log-bytes", 0, "deploy: most bytes one execution may write to stderr (default 16 MiB, at most 1 GiB)")
	collection := fs.String("collection", "", "pause/resume: only this collection")
	c, pos, err := clientFlags(fs, args[1:], getenv, stdout)
	if err != nil {
		return err
	}
	switch args[0] {
	case "deploy":
		if err := wantArgs(pos, 2, "lambda deploy NAME FILE.wasm"); err != nil {
			return err
		}
		wasm, err := os.ReadFile(pos[1])
		if err != nil {
			return err
		}
		for name, v := range map[string]int{"max-output-bytes": *maxOutput, "max-log-bytes": *maxLog} {
			if v < 0 || v > math.MaxInt32 {
				return fmt.Errorf("--%s %d is out of range", name, v)
			}
		}
		req := &atfv1.DeployLambdaRequest{Name: pos[0], Wasm: wasm, MemoryMb: int32(*memoryMB), MaxAttempts: int32(*attempts), MaxConcurrency: int32(*concurrency),
			MaxOutputBytes: int32(*maxOutput), MaxLogBytes: int32(*maxLog)}
		if *timeout > 0 {
			req.Timeout = durationpb.New(*timeout)
		}
		res, err := c.lambdas.DeployLambda(ctx, req)
		if err != nil {
			return clientError(err)
		}
		return c.print(res.GetLambda())
	case "list":
		res, err := c.lambdas.ListLambdas(ctx, &atfv1.ListLambdasRequest{})
		if err != nil {
			return clientError(err)
		}
		return c.print(res)
	case "get", "delete", "pause", "resume":
		if err := wantArgs(pos, 1, "lambda "+args[0]+" NAME"); err != nil {
			return err
		}
		var res proto.Message
		switch args[0] {
		case "get":
			res, err = c.lambdas.GetLambda(ctx, &atfv1.GetLambdaRequest{Name: pos[0]})
		case "delete":
			res, err = c.lambdas.DeleteLambda(ctx, &atfv1.DeleteLambdaRequest{Name: pos[0]})
		case "pause":
			res, err = c.lambdas.PauseLambda(ctx, &atfv1.PauseLambdaRequest{Name: pos[0], Collection: *collection})
		case "resume":
			res, err = c.lambdas.ResumeLambda(ctx, &atfv1.ResumeLambdaRequest{Name: pos[0], Collection: *collection})
		}
		if err != nil {
			return clientError(err)
		}
		return c.print(res)
	}
	fmt.Fprint(stderr, clientUsage)
	return fmt.Errorf("atf lambda: unknown subcommand %q", args[0])
}

func runTask(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, clientUsage)
		return errors.New("atf task: no subcommand")
	}
	fs := newFlagSet("task "+args[0], stderr)
	payload := fs.String("payload", "", "schedule: the payload as text")
	payloadFile := fs.String("payload-file", "", "schedule: read the payload from this file ('-' for stdin)")
	at := fs.String("at", "", "schedule: when to run, RFC 3339 or a delay like 30s (default now)")
	priority := fs.Int("priority", 0, "schedule: 0-9, higher runs first")
	key := fs.String("key", "", "schedule: unique per lambda while the task lives")
	collection := fs.String("collection", "", "schedule, list: the task's collection")
	wait := fs.Bool("wait", false, "schedule: wait for the task to finish and print it")
	state := fs.String("state", "", "list: only tasks in this state (e.g. success, fatal_failure)")
	c, pos, err := clientFlags(fs, args[1:], getenv, stdout)
	if err != nil {
		return err
	}
	switch args[0] {
	case "schedule":
		if err := wantArgs(pos, 1, "task schedule LAMBDA [--payload TEXT | --payload-file FILE]"); err != nil {
			return err
		}
		req := &atfv1.ScheduleRequest{Lambda: pos[0], Payload: []byte(*payload), Priority: int32(*priority), Key: *key, Collection: *collection}
		switch *payloadFile {
		case "":
		case "-":
			if req.Payload, err = io.ReadAll(os.Stdin); err != nil {
				return err
			}
		default:
			if req.Payload, err = os.ReadFile(*payloadFile); err != nil {
				return err
			}
		}
		if *at != "" {
			t, err := parseWhen(*at, time.Now())
			if err != nil {
				return err
			}
			req.ExecuteAt = timestamppb.New(t)
		}
		res, err := c.tasks.Schedule(ctx, req)
		if err != nil {
			return clientError(err)
		}
		if !*wait {
			return c.print(res)
		}
		return c.watch(ctx, res.GetTask().GetId(), true)
	case "get", "cancel", "retry", "watch":
		if err := wantArgs(pos, 1, "task "+args[0]+" ID"); err != nil {
			return err
		}
		var res proto.Message
		switch args[0] {
		case "get":
			res, err = c.tasks.GetTask(ctx, &atfv1.GetTaskRequest{Id: pos[0]})
		case "cancel":
			res, err = c.tasks.CancelTask(ctx, &atfv1.CancelTaskRequest{Id: pos[0]})
		case "retry":
			res, err = c.tasks.RetryTask(ctx, &atfv1.RetryTaskRequest{Id: pos[0]})
		case "watch":
			return c.watch(ctx, pos[0], false)
		}
		if err != nil {
			return clientError(err)
		}
		return c.print(res)
	case "list":
		if err := wantArgs(pos, 1, "task list LAMBDA [--state S] [--collection C]"); err != nil {
			return err
		}
		req := &atfv1.ListTasksRequest{Lambda: pos[0], Collection: *collection}
		if *state != "" {
			name := strings.ToUpper(*state)
			if !strings.HasPrefix(name, "TASK_STATE_") {
				name = "TASK_STATE_" + name
			}
			v, ok := atfv1.TaskState_value[name]
			if !ok {
				return fmt.Errorf("--state %q is not a task state", *state)
			}
			req.State = atfv1.TaskState(v)
		}
		res, err := c.tasks.ListTasks(ctx, req)
		if err != nil {
			return clientError(err)
		}
		return c.print(res)
	}
	fmt.Fprint(stderr, clientUsage)
	return fmt.Errorf("atf task: unknown subcommand %q", args[0])
}

// watch prints every state of a task until it is terminal; lastOnly
// prints only the final one.
func (c *client) watch(ctx context.Context, id string, lastOnly bool) error {
	stream, err := c.tasks.WatchTask(ctx, &atfv1.WatchTaskRequest{Id: id})
	if err != nil {
		return clientError(err)
	}
	defer stream.Close()
	var last *atfv1.Task
	for stream.Receive() {
		last = stream.Msg().GetTask()
		if !lastOnly {
			if err := c.print(last); err != nil {
				return err
			}
		}
	}
	if err := stream.Err(); err != nil {
		return clientError(err)
	}
	if lastOnly && last != nil {
		return c.print(last)
	}
	return nil
}

// parseWhen reads an RFC 3339 time or a delay from now.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(d), nil
	}
	return time.Time{}, fmt.Errorf("--at %q is neither an RFC 3339 time nor a delay like 30s", v)
}
