//go:build wasip1

// Command panic panics.
package main

func main() {
	panic("boom from the panic module")
}
