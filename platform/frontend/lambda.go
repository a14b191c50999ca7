package frontend

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
	"github.com/atfhq/atf/platform/store"
)

// DeployLambda validates, compiles and stores a module and bumps the
// lambda's version.
func (f *Frontend) DeployLambda(ctx context.Context, req *atfv1.DeployLambdaRequest) (*atfv1.DeployLambdaResponse, error) {
	l, err := f.deploy(ctx, req)
	if err != nil {
		return nil, toConnect(err)
	}
	pl, err := f.lambdaProtos(ctx, l)
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.DeployLambdaResponse{Lambda: pl[0]}, nil
}

func (f *Frontend) deploy(ctx context.Context, req *atfv1.DeployLambdaRequest) (store.Lambda, error) {
	if err := validateName("lambda name", req.GetName()); err != nil {
		return store.Lambda{}, err
	}
	if len(req.GetWasm()) > f.cfg.MaxModuleBytes {
		return store.Lambda{}, &tooLargeError{what: fmt.Sprintf("module (%d bytes)", len(req.GetWasm())), limit: f.cfg.MaxModuleBytes}
	}
	if len(req.GetWasm()) == 0 {
		return store.Lambda{}, invalidf("module is empty: send the .wasm file's bytes as the body (curl --data-binary @file.wasm)")
	}
	l := store.Lambda{
		Namespace:       namespace(ctx),
		Name:            req.GetName(),
		Timeout:         req.GetTimeout().AsDuration(),
		MemoryMB:        int(req.GetMemoryMb()),
		MaxAttempts:     int(req.GetMaxAttempts()),
		MaxConcurrency:  int(req.GetMaxConcurrency()),
		AllowedHosts:    req.GetAllowedHosts(),
		RetryBackoff:    req.GetRetryBackoff().AsDuration(),
		RetryBackoffMax: req.GetRetryBackoffMax().AsDuration(),
		MaxOutputBytes:  int(req.GetMaxOutputBytes()),
		MaxLogBytes:     int(req.GetMaxLogBytes()),
	}
	if req.GetTimeout() != nil && l.Timeout <= 0 {
		return store.Lambda{}, invalidf("timeout %s is out of range: use a duration between 1ms and %s, e.g. 30s", l.Timeout, maxTimeout)
	}
	if err := validateLambdaSettings(l.Timeout, l.MemoryMB, l.MaxAttempts, l.MaxConcurrency, l.MaxOutputBytes, l.MaxLogBytes, l.RetryBackoff, l.RetryBackoffMax); err != nil {
		return store.Lambda{}, err
	}
	info, err := f.cfg.Inspector.Inspect(ctx, req.GetWasm())
	if err != nil {
		return store.Lambda{}, err
	}
	sum := sha256.Sum256(req.GetWasm())
	l.SHA256 = hex.EncodeToString(sum[:])
	l.SizeBytes = int64(len(req.GetWasm()))
	l.ABI = info.ABI
	l.Imports = info.Imports
	if err := f.cfg.Store.PutModule(ctx, l.SHA256, req.GetWasm()); err != nil {
		return store.Lambda{}, fmt.Errorf("store module: %w", err)
	}
	f.lambdas.forget(l.Namespace, l.Name)
	return f.cfg.Store.DeployLambda(ctx, l)
}

// GetLambda returns a lambda.
func (f *Frontend) GetLambda(ctx context.Context, req *atfv1.GetLambdaRequest) (*atfv1.GetLambdaResponse, error) {
	l, err := f.getLambda(ctx, req.GetName())
	if err != nil {
		return nil, toConnect(err)
	}
	pl, err := f.lambdaProtos(ctx, l)
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.GetLambdaResponse{Lambda: pl[0]}, nil
}

func (f *Frontend) getLambda(ctx context.Context, name string) (store.Lambda, error) {
	if err := validateName("lambda name", name); err != nil {
		return store.Lambda{}, err
	}
	return f.cfg.Store.GetLambda(ctx, namespace(ctx), name)
}

// ListLambdas lists the namespace's lambdas by name.
func (f *Frontend) ListLambdas(ctx context.Context, _ *atfv1.ListLambdasRequest) (*atfv1.ListLambdasResponse, error) {
	ls, err := f.cfg.Store.ListLambdas(ctx, namespace(ctx))
	if err != nil {
		return nil, toConnect(err)
	}
	pls, err := f.lambdaProtos(ctx, ls...)
	if err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.ListLambdasResponse{Lambdas: pls}, nil
}

// DeleteLambda removes a lambda; its tasks stay readable.
func (f *Frontend) DeleteLambda(ctx context.Context, req *atfv1.DeleteLambdaRequest) (*atfv1.DeleteLambdaResponse, error) {
	if err := validateName("lambda name", req.GetName()); err != nil {
		return nil, toConnect(err)
	}
	f.lambdas.forget(namespace(ctx), req.GetName())
	if err := f.cfg.Store.DeleteLambda(ctx, namespace(ctx), req.GetName()); err != nil {
		return nil, toConnect(err)
	}
	return &atfv1.DeleteLambdaResponse{}, nil
}

// parseDelay parses "30s"-style durations for the REST routes.
func parseDuration(param, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, invalidf("%s=%q is not a duration: use e.g. 500ms, 30s or 5m", param, s)
	}
	return d, nil
}

// DeployLambdaIfChanged deploys req unless the lambda already runs the same
// module, and returns the lambda in force. `atf dev` uses it so that a
// restart does not bump the examples' versions.
func (f *Frontend) DeployLambdaIfChanged(ctx context.Context, req *atfv1.DeployLambdaRequest) (*atfv1.Lambda, error) {
	sum := sha256.Sum256(req.GetWasm())
	if l, err := f.cfg.Store.GetLambda(ctx, namespace(ctx), req.GetName()); err == nil && l.SHA256 == hex.EncodeToString(sum[:]) {
		pl, err := f.lambdaProtos(ctx, l)
		if err != nil {
			return nil, err
		}
		return pl[0], nil
	}
	res, err := f.DeployLambda(ctx, req)
	if err != nil {
		return nil, err
	}
	return res.GetLambda(), nil
}
