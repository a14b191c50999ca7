package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	oklogrun "github.com/oklog/run"
	"github.com/redis/go-redis/v9"

	"github.com/atfhq/atf/platform/consumer"
	"github.com/atfhq/atf/platform/controller"
	"github.com/atfhq/atf/platform/frontend"
	"github.com/atfhq/atf/platform/hostsvc"
	"github.com/atfhq/atf/platform/hsc"
	"github.com/atfhq/atf/platform/server"
	"github.com/atfhq/atf/platform/store"
	"github.com/atfhq/atf/platform/telemetry"
	"github.com/atfhq/atf/runtime/sandbox"
)

// Role names for --roles.
const (
	roleFrontend   = "frontend"
	roleConsumer   = "consumer"
	roleController = "controller"
	roleHSC        = "hsc"
)

var allRoles = []string{roleFrontend, roleConsumer, roleController, roleHSC}

func parseRoles(s string) (map[string]bool, error) {
	roles := map[string]bool{}
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		known := false
		for _, k := range allRoles {
			known = known || k == r
		}
		if !known {
			return nil, fmt.Errorf("--roles: unknown role %q: use any of %s", r, strings.Join(allRoles, ","))
		}
		roles[r] = true
	}
	if len(roles) == 0 {
		return nil, fmt.Errorf("--roles is empty: use any of %s", strings.Join(allRoles, ","))
	}
	return roles, nil
}

// platform is the roles of one process, built but not yet started.
type platform struct {
	store      *store.Store
	frontend   *frontend.Frontend
	controller *controller.Controller
	hsc        *hsc.HSC
	consumer   *consumer.Consumer
	host       *hostsvc.Service // with the frontend: KV and follow-ups for executors
	handler    http.Handler
}

type platformConfig struct {
	rdb      redis.UniversalClient
	roles    map[string]bool
	timeouts timeoutFlags
	engine   *sandbox.Engine // validates uploads (frontend)
	logger   *slog.Logger
	tel      *telemetry.Telemetry // nil: no /metrics, no instrumentation
}

func newPlatform(cfg platformConfig) *platform {
	instrumentRedis(cfg.rdb, cfg.tel, cfg.logger)
	st := store.New(cfg.rdb, store.Options{
		EnqueueTimeout: cfg.timeouts.enqueueTimeout, Retention: cfg.timeouts.retention,
		DispatchLead: cfg.timeouts.dispatchLead, OnEnqueue: consumer.ObserveEnqueued,
	})
	p := &platform{store: st}
	if cfg.roles[roleFrontend] {
		p.frontend = frontend.New(frontend.Config{Store: st, Inspector: cfg.engine})
	}
	if cfg.roles[roleController] {
		p.controller = controller.New(controller.Config{Store: st, Logger: cfg.logger, ClaimTimeout: cfg.timeouts.claimTimeout})
	}
	if cfg.roles[roleHSC] {
		p.hsc = hsc.New(hsc.Config{Store: st, Logger: cfg.logger, HeartbeatTimeout: cfg.timeouts.heartbeatTimeout})
	}
	if cfg.roles[roleConsumer] {
		p.consumer = consumer.New(consumer.Config{Store: st, Logger: cfg.logger, Timeouts: cfg.timeouts.store()})
	}
	srvCfg := server.Config{
		Frontend: p.frontend,
		Logger:   cfg.logger,
		Ready: func(ctx context.Context) error {
			if err := cfg.rdb.Ping(ctx).Err(); err != nil {
				return fmt.Errorf("redis: %w", err)
			}
			return nil
		},
	}
	if p.controller != nil {
		srvCfg.Controller = p.controller
		// One gauge per deployment would do; one per controller is cheap.
		// Every namespace's queues: those that ever deployed a lambda.
		telemetry.ObserveQueueDepth(func(ctx context.Context) ([]telemetry.QueueDepth, error) {
			ds, err := st.QueueDepths(ctx, frontend.DefaultNamespace)
			out := make([]telemetry.QueueDepth, len(ds))
			for i, d := range ds {
				out[i] = telemetry.QueueDepth{Namespace: d.Namespace, Lambda: d.Lambda, Priority: d.Priority, Length: d.Length}
			}
			return out, err
		})
	}
	if cfg.tel != nil {
		srvCfg.Metrics = cfg.tel.MetricsHandler()
	}
	if p.hsc != nil {
		srvCfg.HSC = p.hsc
	}
	if p.frontend != nil {
		p.host = hostsvc.New(hostsvc.Config{Store: st, Scheduler: p.frontend})
		srvCfg.Host = p.host
	}
	p.handler = server.Handler(srvCfg)
	return p
}

// actors adds the platform's long-running parts to g.
func (p *platform) actors(ctx context.Context, g *actorGroup, ln net.Listener, logger *slog.Logger) {
	g.add(ctx, func(ctx context.Context) error { return server.Serve(ctx, ln, p.handler, logger) })
	if p.consumer != nil {
		g.add(ctx, p.consumer.Run)
	}
	if p.controller != nil {
		// Subscribed before the caller says it listens: a lambda deployed the
		// moment the port opens must wake the controller's pops.
		p.controller.Subscribe(ctx)
		g.add(ctx, p.controller.Run)
	}
}

// actorGroup is a run.Group whose actors take a context.
type actorGroup struct{ oklogrun.Group }

func (g *actorGroup) add(ctx context.Context, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	g.Add(func() error { return fn(ctx) }, func(error) { cancel() })
}

// untilDone adds an actor that ends the group when ctx ends (a signal).
func (g *actorGroup) untilDone(ctx context.Context) {
	stop := make(chan struct{})
	g.Add(func() error {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		return nil
	}, func(error) { close(stop) })
}

func listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// redisFlags name the task store: --redis URL and, for a Redis Cluster,
// --redis-cluster.
type redisFlags struct {
	url     *string
	cluster *bool
}

func (r *redisFlags) register(fs *flag.FlagSet, usage string) {
	r.url = fs.String("redis", "", usage)
	r.cluster = fs.Bool("redis-cluster", false, "the --redis URL names a Redis Cluster: its host and any addr= parameters are seed nodes, e.g. redis://10.0.0.1:6379?addr=10.0.0.2:6379")
}

// open connects to the store the flags name.
func (r *redisFlags) open() (redis.UniversalClient, error) {
	if *r.cluster {
		return openRedisCluster(*r.url)
	}
	return openRedis(*r.url)
}

func openRedis(url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis %q: %w (use e.g. redis://127.0.0.1:6379/0)", url, err)
	}
	if opts.PoolSize == 0 { // not set in the URL (?pool_size=)
		// Each executor keeps several NextWork long-polls open, and each
		// holds a connection in a blocking pop for up to 10 s; go-redis's
		// default (10 per CPU) would leave heartbeats and results waiting
		// for a connection. Connections are opened only when needed.
		opts.PoolSize = minPoolSize
	}
	if opts.Protocol == 0 { // not set in the URL (?protocol=)
		opts.Protocol = defaultProtocol
	}
	return redis.NewClient(opts), nil
}

// openRedisCluster opens a Redis Cluster client. Every key a script
// touches shares its hash tag (see package store), so each script runs on
// the one node that holds its partition; the queues, leases and lambdas
// have a hash tag of their own each.
func openRedisCluster(url string) (*redis.ClusterClient, error) {
	opts, err := redis.ParseClusterURL(url)
	if err != nil {
		return nil, fmt.Errorf("--redis %q with --redis-cluster: %w (use e.g. redis://10.0.0.1:6379?addr=10.0.0.2:6379)", url, err)
	}
	if opts.PoolSize == 0 { // per node, as for a single server
		opts.PoolSize = minPoolSize
	}
	if opts.Protocol == 0 {
		opts.Protocol = defaultProtocol
	}
	return redis.NewClusterClient(opts), nil
}

// minPoolSize is the Redis connection pool's size unless the URL sets one.
const minPoolSize = 256

// defaultProtocol is RESP2 unless the URL sets ?protocol=3: atf uses none of
// RESP3's additions (push notifications, client-side caching), and with
// RESP3 go-redis looks for pending push notifications before every reply
// it reads (3.6% of the platform's CPU per task in BenchmarkThroughput).
const defaultProtocol = 2
