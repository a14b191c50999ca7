package frontend

import (
	"context"
	"sync"
	"time"

	"github.com/atfhq/atf/platform/store"
)

// lambdaCacheTTL is how long Schedule trusts a lambda it read: a changed
// max_attempts, or a lambda deleted through another frontend, takes effect
// within it. Deploys and deletes through this frontend take effect at once.
const lambdaCacheTTL = time.Second

// lambdaCache spares Schedule a Redis round trip per task for the lambda
// it schedules for. Misses (unknown lambdas) are not cached.
type lambdaCache struct {
	mu sync.Mutex
	m  map[string]cachedLambda
}

type cachedLambda struct {
	l  store.Lambda
	at time.Time
}

func (c *lambdaCache) get(ctx context.Context, s Store, ns, name string) (store.Lambda, error) {
	key := ns + "/" + name
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && time.Since(e.at) < lambdaCacheTTL {
		return e.l, nil
	}
	l, err := s.GetLambda(ctx, ns, name)
	if err != nil {
		return l, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedLambda{}
	}
	c.m[key] = cachedLambda{l: l, at: time.Now()}
	return l, nil
}

func (c *lambdaCache) forget(ns, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, ns+"/"+name)
}
