//go:build wasip1

// Command memhog allocates and touches memory, 1 MiB at a time, until it dies.
package main

import "fmt"

var keep [][]byte

func main() {
	for i := 0; ; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(j)
		}
		keep = append(keep, b)
		if i%64 == 0 {
			fmt.Printf("allocated %d MiB\n", i+1)
		}
	}
}
