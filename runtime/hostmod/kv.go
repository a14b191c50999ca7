package hostmod

import (
	"context"
	"time"
)

// kv_get(key_ptr i32, key_len i32, value_len_ptr i32) -> i32
//
// On OK the value's length is written at value_len_ptr (u32 LE) and the
// value is the pending result (result_read).
func hostKVGet(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	key := g.string("key", u32(stack[0]), u32(stack[1]))
	out := u32(stack[2])
	g.check("value length", out, 4)
	if c := t.checkKey(key); c != OK {
		stack[0] = status(int32(c))
		return
	}
	if t.Services == nil {
		stack[0] = status(int32(CodeUnavailable))
		return
	}
	v, found, err := t.Services.KVGet(ctx, key)
	switch {
	case err != nil:
		stack[0] = status(int32(codeOf(err)))
		return
	case !found:
		stack[0] = status(int32(CodeNotFound))
		return
	}
	t.setResult(v)
	g.putU32s("value length", out, uint32(len(v)))
	stack[0] = status(int32(OK))
}

// kv_set(key_ptr i32, key_len i32, val_ptr i32, val_len i32, ttl_ms i64) -> i32
func hostKVSet(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	key := g.string("key", u32(stack[0]), u32(stack[1]))
	vptr, vlen, ttl := u32(stack[2]), u32(stack[3]), i64(stack[4])
	g.check("value", vptr, vlen)
	if c := t.checkKey(key); c != OK {
		stack[0] = status(int32(c))
		return
	}
	switch {
	case int(vlen) > t.limits.MaxKVValueBytes:
		stack[0] = status(int32(CodeTooLarge))
		return
	case ttl < 0 || ttl > int64(365*24*time.Hour/time.Millisecond):
		stack[0] = status(int32(CodeInvalid))
		return
	case t.Services == nil:
		stack[0] = status(int32(CodeUnavailable))
		return
	}
	val := g.bytes("value", vptr, vlen)
	err := t.Services.KVSet(ctx, key, val, time.Duration(ttl)*time.Millisecond)
	stack[0] = status(int32(codeOf(err)))
}

// kv_delete(key_ptr i32, key_len i32) -> i32: OK, or CodeNotFound when
// there was no such key.
func hostKVDelete(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	key := g.string("key", u32(stack[0]), u32(stack[1]))
	if c := t.checkKey(key); c != OK {
		stack[0] = status(int32(c))
		return
	}
	if t.Services == nil {
		stack[0] = status(int32(CodeUnavailable))
		return
	}
	found, err := t.Services.KVDelete(ctx, key)
	switch {
	case err != nil:
		stack[0] = status(int32(codeOf(err)))
	case !found:
		stack[0] = status(int32(CodeNotFound))
	default:
		stack[0] = status(int32(OK))
	}
}

func (t *Task) checkKey(key string) Code {
	switch {
	case key == "":
		return CodeInvalid
	case len(key) > t.limits.MaxKVKeyBytes:
		return CodeTooLarge
	}
	return OK
}

// schedule(lambda_ptr, lambda_len, payload_ptr, payload_len i32, delay_ms i64,
// key_ptr, key_len, id_len_ptr i32) -> i32
//
// On OK the new task's id is the pending result and its length is written
// at id_len_ptr. An empty lambda is the calling task's own.
func hostSchedule(ctx context.Context, t *Task, g guestMem, stack []uint64) {
	lambda := g.string("lambda", u32(stack[0]), u32(stack[1]))
	pptr, plen := u32(stack[2]), u32(stack[3])
	delay := i64(stack[4])
	key := g.string("key", u32(stack[5]), u32(stack[6]))
	out := u32(stack[7])
	g.check("payload", pptr, plen)
	g.check("id length", out, 4)
	switch {
	case int(plen) > t.limits.MaxSchedulePayloadBytes:
		stack[0] = status(int32(CodeTooLarge))
		return
	case delay < 0 || delay > int64(366*24*time.Hour/time.Millisecond) || len(lambda) > 256 || len(key) > 256:
		stack[0] = status(int32(CodeInvalid))
		return
	case t.Services == nil:
		stack[0] = status(int32(CodeUnavailable))
		return
	}
	if lambda == "" {
		lambda = t.Lambda
	}
	id, err := t.Services.Schedule(ctx, FollowUp{
		Lambda:  lambda,
		Payload: g.bytes("payload", pptr, plen),
		Delay:   time.Duration(delay) * time.Millisecond,
		Key:     key,
	})
	if err != nil {
		stack[0] = status(int32(codeOf(err)))
		return
	}
	t.setResult([]byte(id))
	g.putU32s("id length", out, uint32(len(id)))
	stack[0] = status(int32(OK))
}
