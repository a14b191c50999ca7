//go:build wasip1

// Command netdial tries to reach the network from inside the sandbox. Its
// stdin is "TCPADDR UDPADDR": it dials TCPADDR, sends a datagram to
// UDPADDR, listens, and opens fds 3-15 as socket listeners, printing one
// line per attempt ("what: error" or "what: ok"). It exits 0 whatever
// happens: the test checks that nothing arrived at its listeners.
//
// On wasip1 Go's net package dials through WASI sockets, which a module
// only has when the host hands it a listening socket; Listen and UDP use
// an in-process fake network (net/net_fake.go) that never leaves the
// guest.
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	in, _ := io.ReadAll(os.Stdin)
	addrs := strings.Fields(string(in))
	if len(addrs) != 2 {
		fmt.Fprintln(os.Stderr, "stdin: want TCPADDR UDPADDR")
		os.Exit(2)
	}
	report := func(what string, err error) {
		if err != nil {
			fmt.Printf("%s: %v\n", what, err)
		} else {
			fmt.Printf("%s: ok\n", what)
		}
	}
	c, err := net.DialTimeout("tcp", addrs[0], time.Second)
	if err == nil {
		_, err = c.Write([]byte("hello\n"))
		c.Close()
	}
	report("dial tcp "+addrs[0], err)
	u, err := net.Dial("udp", addrs[1])
	if err == nil {
		_, err = u.Write([]byte("hello\n"))
		u.Close()
	}
	report("send udp "+addrs[1], err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err == nil {
		l.Close()
	}
	report("listen tcp", err)
	for fd := 3; fd < 16; fd++ {
		l, err := net.FileListener(os.NewFile(uintptr(fd), "fd"))
		if err == nil {
			l.Close()
		}
		report(fmt.Sprintf("listener on fd %d", fd), err)
	}
}
