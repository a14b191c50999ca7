package sandbox

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// How a running module is stopped from outside.
//
// Every module is instrumented before it is compiled (instrument.go): each
// loop head and function entry tests an exported global, $stop, and traps
// when it is set. The run context (runctx.go) is done on any of these
// events, told apart by its Cause:
//
//   - the job's timeout passed          → errTimeout
//   - stdout went over MaxOutputBytes   → errOutputLimit (writer.go)
//   - stderr went over MaxLogBytes      → errLogLimit (writer.go)
//   - the caller cancelled its context  → the caller's cause
//
// and then $stop is set, so the module traps within one loop iteration:
// by callGuest, which waits for the call or the end of the run context
// (told by runContext.setWake, or the caller's context done), whichever
// comes first; or, around calls made outside callGuest (a
// reactor's _initialize), by a context.AfterFunc (guard.arm). wazero's own
// WithCloseOnContextDone did the same by calling into Go at every loop
// back-edge, which made CPU-bound modules ~8x slower (runtime/RATIONALE.md).
//
// A module blocked in a host function is not at a loop head: WASI sleeps
// (poll_oneoff) use runContext.sleep, which returns when the run context is
// done, and atf_v1 host functions get the run context and must return when
// it is done. For one that ignores it, callGuest gives up on the module
// abandonAfter after the run context is done: Run returns (timeout,
// cancelled …) and the instance is closed whenever the host function
// returns. The sandbox cannot stop a Go function; until it returns, its
// goroutine and the instance's memory stay allocated.

var (
	errTimeout     = errors.New("sandbox: timeout")
	errOutputLimit = errors.New("sandbox: output limit")
	errLogLimit    = errors.New("sandbox: log limit")
)

// sleep is the guest's nanosleep (WASI poll_oneoff on a clock): it returns
// early when the run context is done, so the module reaches a loop head.
func (r *runContext) sleep(ns int64) {
	if ns <= 0 {
		return
	}
	t := time.NewTimer(time.Duration(ns))
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Done():
	}
}

// guard holds an instance's instrumentation globals.
type guard struct {
	stop   api.MutableGlobal
	budget api.Global
}

func newGuard(mod api.Module) (guard, error) {
	stop, ok1 := mod.ExportedGlobal(stopExport).(api.MutableGlobal)
	budget := mod.ExportedGlobal(budgetExport)
	if !ok1 || budget == nil {
		return guard{}, errors.New("module is not instrumented")
	}
	return guard{stop: stop, budget: budget}, nil
}

// arm sets $stop once ctx is done, until the returned disarm is called;
// after disarm returns, $stop is not written any more.
func (g guard) arm(ctx context.Context) (disarm func()) {
	var mu sync.Mutex
	disarmed := false
	cancel := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !disarmed {
			g.stop.Set(1)
		}
	})
	return func() {
		if cancel() {
			return // never ran
		}
		mu.Lock()
		disarmed = true
		mu.Unlock()
	}
}

// stackExhausted reports whether the module ran out of call-stack budget.
// Call it only when no guest code runs.
func (g guard) stackExhausted() bool { return int32(uint32(g.budget.Get())) < 0 }

// reset prepares a reused instance for its next call: $stop cleared (a stop
// may have fired just as the last call returned) and $budget full.
func (g guard) reset(budget int32) {
	g.stop.Set(0)
	if b, ok := g.budget.(api.MutableGlobal); ok {
		b.Set(uint64(uint32(budget)))
	}
}

// abandonAfter is how long callGuest waits, once the run context is done,
// for the module to stop. An instrumented module stops within milliseconds
// at its next loop head or call; one that has not is blocked in a host
// function that does not return. The margin is for a loaded machine, where
// the goroutine that sets $stop and the guest's thread wait their turn for
// a CPU (250 ms was seen to abandon a plain spinning loop under the race
// detector with parallel tests).
const abandonAfter = 500 * time.Millisecond

// guestCall is one call into a module, run by callGuest on a guest
// goroutine. A reactor instance keeps one for all its calls (none runs
// while another does); a command's run makes one.
type guestCall struct {
	// call calls into the module; finish runs on the guest goroutine once
	// call returns, if and only if callGuest gave up on it (it closes the
	// instance).
	call   func() error
	finish func()

	done chan error // buffered: the guest goroutine never waits on it
	cpu  time.Duration
	// wake is told when the run context ends (runContext.setWake);
	// buffered, and drained before each call.
	wake chan struct{}

	mu       sync.Mutex
	returned bool // call returned
	gaveUp   bool // callGuest returned abandoned
}

func newGuestCall(call func() error, finish func()) *guestCall {
	return &guestCall{call: call, finish: finish, done: make(chan error, 1), wake: make(chan struct{}, 1)}
}

// callGuest runs c.call, which calls into the module guarded by g, on a
// guest goroutine, and returns its error. When rc is done first, it sets
// $stop and waits; when c.call has not returned abandonAfter later,
// callGuest returns abandoned = true at once and leaves c.call running;
// then, and only then, c.finish runs on the guest goroutine once c.call
// returns, and c is never used again.
//
// cpu is the CPU time c.call used (the goroutine is locked to its thread
// meanwhile, and the thread's CPU clock read around it), 0 when the clock
// cannot be read or abandoned. $stop is written only before callGuest
// returns, so a reused instance's next call starts with it cleared.
func callGuest(rc *runContext, c *guestCall, g guard) (err error, cpu time.Duration, abandoned bool) {
	c.returned, c.gaveUp, c.cpu = false, false, 0 // no guest goroutine has c yet
	select {
	case <-c.wake: // told at the end of the last call, after it returned
	default:
	}
	rc.setWake(c.wake)
	defer rc.setWake(nil)
	goGuest(c)
	select {
	case err := <-c.done:
		return err, c.cpu, false
	case <-c.wake: // timeout, Stop, or the layer done
	case <-rc.parent.Done(): // the caller's cancellation, rc without a layer
	}
	g.stop.Set(1)
	t := time.NewTimer(abandonAfter)
	defer t.Stop()
	select {
	case err := <-c.done:
		return err, c.cpu, false
	case <-t.C:
	}
	c.mu.Lock()
	if c.returned {
		c.mu.Unlock()
		err := <-c.done
		return err, c.cpu, false
	}
	c.gaveUp = true
	c.mu.Unlock()
	return nil, 0, true
}

// run is the guest goroutine's side of callGuest.
func (c *guestCall) run() {
	runtime.LockOSThread()
	c0, ok0 := threadCPU()
	err := c.call()
	c1, ok1 := threadCPU()
	runtime.UnlockOSThread()
	c.mu.Lock()
	c.returned = true
	gaveUp := c.gaveUp
	if !gaveUp && ok0 && ok1 { // abandoned: the caller has moved on
		c.cpu = c1 - c0
	}
	c.mu.Unlock()
	if gaveUp {
		c.finish()
		return
	}
	c.done <- err // the last touch of c: the caller may reuse it at once
}

// goGuest runs c on a pooled goroutine. Calls into a module need a deep Go
// stack (wazero's entry, host functions); a new goroutine per task would
// grow one again, copying, every time.
func goGuest(c *guestCall) {
	select {
	case w := <-idleGuestWorkers:
		w <- c
	default:
		go guestWorker(c)
	}
}

// idleGuestWorkers holds parked workers, each waiting on its own channel;
// one finding the pool full exits instead.
var idleGuestWorkers = make(chan chan *guestCall, 256)

func guestWorker(c *guestCall) {
	w := make(chan *guestCall)
	for {
		c.run()
		select {
		case idleGuestWorkers <- w:
		default:
			return
		}
		c = <-w
	}
}
