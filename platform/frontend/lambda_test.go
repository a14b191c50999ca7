package frontend_test

import (
	"net/http"
	"strings"
	"testing"

	"connectrpc.com/connect"

	atfv1 "github.com/atfhq/atf/gen/atf/v1"
)

// TestDeployLimitBounds: max_output_bytes and max_log_bytes out of range
// are refused before the module is looked at, over Connect and REST.
func TestDeployLimitBounds(t *testing.T) {
	b := setup(t)
	for _, c := range []struct {
		req  *atfv1.DeployLambdaRequest
		want string
	}{
		{&atfv1.DeployLambdaRequest{MaxOutputBytes: 16<<20 + 1}, "max_output_bytes 16777217 is out of range: use 1-16777216"},
		{&atfv1.DeployLambdaRequest{MaxOutputBytes: -1}, "max_output_bytes -1 is out of range"},
		{&atfv1.DeployLambdaRequest{MaxLogBytes: -5}, "max_log_bytes -5 is out of range: use 1-1073741824"},
	} {
		c.req.Name, c.req.Wasm = "x", []byte("\x00asm")
		_, err := b.lambdas.DeployLambda(b.ctx, c.req)
		wantCode(t, err, connect.CodeInvalidArgument, c.want)
	}
	for query, want := range map[string]string{
		"max_output_bytes=99999999": "max_output_bytes 99999999 is out of range",
		"max_log_bytes=lots":        `max_log_bytes=\"lots\" is not a whole number`,
	} {
		status, body := b.do(t, "PUT", "/v1/lambdas/x?"+query, "\x00asm")
		if status != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("PUT ?%s: %d %s, want 400 with %q", query, status, body, want)
		}
	}
}
