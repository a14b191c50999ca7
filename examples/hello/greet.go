package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// request is the task payload.
type request struct {
	Name string `json:"name"`
}

// response is the task output.
type response struct {
	Greeting string `json:"greeting"`
}

// greet turns a payload like {"name":"Ada"} into {"greeting":"Hello, Ada!"}.
// An empty or absent name greets the world. An empty payload counts as {}.
// A payload that is not a JSON object is an error: retrying would not help.
func greet(in []byte) ([]byte, error) {
	var req request
	if len(strings.TrimSpace(string(in))) > 0 {
		if err := json.Unmarshal(in, &req); err != nil {
			return nil, fmt.Errorf(`payload must be a JSON object like {"name":"Ada"}: %w`, err)
		}
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = "world"
	}
	out, err := json.Marshal(response{Greeting: "Hello, " + name + "!"})
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}
