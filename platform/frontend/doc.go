// Package frontend is atf's front door: the Connect handlers of
// atf.v1.LambdaService and atf.v1.TaskService and the plain HTTP routes of
// DESIGN.md for curl users. It validates everything at the door — module
// bytes, names, sizes, priorities — so that the store only ever sees
// well-formed requests, and it is the one place where store and sandbox
// errors become Connect codes (errors.go).
package frontend
