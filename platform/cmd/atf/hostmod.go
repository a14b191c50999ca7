package main

import (
	"github.com/atfhq/atf/runtime/hostmod"
	"github.com/atfhq/atf/runtime/sandbox"
)

// hostModules are the host modules every sandbox Engine of the atf command
// registers: atf_v1. The server's Engine needs it too, so that an upload's
// atf_v1 imports are checked by name and signature.
var hostModules = []sandbox.HostModule{hostmod.Register}
