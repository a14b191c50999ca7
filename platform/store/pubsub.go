package store

import (
	"context"
)

// subscribe runs handle on each message of channel until ctx ends; the
// goroutine it starts belongs to ctx. It returns once the subscription is
// confirmed, so that nothing published after it returns is missed (an
// error there is retried by the subscription itself). done runs when the
// goroutine ends: callers close their output channel there.
func (s *Store) subscribe(ctx context.Context, channel string, handle func(payload string), done func()) {
	sub := s.rdb.Subscribe(ctx, channel)
	_, _ = sub.Receive(ctx)
	go func() {
		defer done()
		defer sub.Close()
		msgs := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				handle(m.Payload)
			}
		}
	}()
}

// changes is a subscription that only says "something changed": messages
// coalesce into one pending signal.
func (s *Store) changes(ctx context.Context, channel string) <-chan struct{} {
	out := make(chan struct{}, 1)
	s.subscribe(ctx, channel, func(string) {
		select {
		case out <- struct{}{}:
		default: // one pending change says it all
		}
	}, func() { close(out) })
	return out
}
