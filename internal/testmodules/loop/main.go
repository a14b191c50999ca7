//go:build wasip1

// Command loop spins forever without calling the host.
package main

var sink int

func main() {
	for i := 0; ; i++ {
		sink += i
	}
}
