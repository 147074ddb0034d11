package bpf_test

import (
	"log"

	"github.com/zerohop/zerohop/bpf"
)

// The runtime attaches the program, registers its services, and hands each
// queue's AF_XDP socket (from the xsk package) to the program. Must run in
// the interface's network namespace, as root.
func Example() {
	prog, err := bpf.Attach("eth0", bpf.Options{Pin: true})
	if err != nil {
		log.Fatal(err)
	}
	defer prog.Close()
	log.Printf("XDP attached in %v mode", prog.Mode())

	if err := prog.AddService(bpf.Service{Port: 7000, ID: 1}); err != nil {
		log.Fatal(err)
	}
	var xskFDs []int // one AF_XDP socket per queue, bound to eth0 and that queue
	for queue, fd := range xskFDs {
		if err := prog.SetSocket(queue, fd); err != nil {
			log.Fatal(err)
		}
	}
	// ... serve; on shutdown, before closing the sockets:
	for queue := range xskFDs {
		prog.ClearSocket(queue)
	}
	c, err := prog.Counters()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("redirected %d, passed %d, no socket %d", c.Redirected, c.Passed, c.NoSocket)
}
