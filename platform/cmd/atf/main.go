// Command atf is the asynchronous task platform: every role of it, and the
// executor, in one binary.
//
//	atf dev      [--listen ADDR] [--redis URL] [--data DIR]   all roles + an executor, examples deployed
//	atf server   --listen ADDR --redis URL [--roles ...]      the platform's roles
//	atf executor --server URL [--slots N]                     one executor process
//	atf lambda …, atf task …                                  client commands for people
//
// Every flag has an ATF_* environment equivalent (--heartbeat-interval is
// ATF_HEARTBEAT_INTERVAL); a flag on the command line wins.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "atf:", err)
		}
		os.Exit(2)
	}
}

const usage = `atf — an asynchronous task platform; lambdas are WebAssembly modules.

Usage:
  atf dev      [--listen 127.0.0.1:8080] [--redis URL] [--data DIR]
  atf server   --listen ADDR --redis URL [--roles frontend,consumer,controller,hsc]
  atf executor --server URL [--slots N]
  atf lambda deploy|list|get|delete|pause|resume ...
  atf task schedule|get|list|cancel|retry|watch ...

Run "atf help" for the client commands, "atf <command> --help" for a
command's flags.
`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "dev":
		return runDev(ctx, args[1:], getenv, stdout, stderr)
	case "server":
		return runServer(ctx, args[1:], getenv, stdout, stderr)
	case "executor":
		return runExecutor(ctx, args[1:], getenv, stdout, stderr)
	case "lambda":
		return runLambda(ctx, args[1:], getenv, stdout, stderr)
	case "task":
		return runTask(ctx, args[1:], getenv, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage+"\n"+clientUsage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
