package uring

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

// recvmsgTemplate reserves room for an IPv4/IPv6 source address and no
// control data in each provided buffer.
func recvmsgTemplate() *unix.Msghdr {
	return &unix.Msghdr{Namelen: unix.SizeofSockaddrInet6}
}

func sendDatagrams(t *testing.T, from int, to netip.AddrPort, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		if err := unix.Sendto(from, []byte(fmt.Sprintf("datagram %d", i)), 0, sockaddr4(to)); err != nil {
			t.Fatal(err)
		}
	}
}

// checkDatagram decodes one multishot RECVMSG CQE and checks it carries
// datagram i from src in buffer wantID.
func checkDatagram(t *testing.T, br *BufferRing, c CQE, i int, src netip.AddrPort, wantID int) uint16 {
	t.Helper()
	if c.Res < 0 {
		t.Fatalf("datagram %d: CQE %+v: %v", i, c, c.Err())
	}
	id, ok := c.BufferID()
	if !ok || (wantID >= 0 && int(id) != wantID) {
		t.Fatalf("datagram %d: CQE %+v: buffer id %d (set %v), want %d", i, c, id, ok, wantID)
	}
	out, err := ParseRecvmsgOut(br.Buffer(id)[:c.Res], unix.SizeofSockaddrInet6, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("datagram %d", i); string(out.Payload) != want || out.Truncated() {
		t.Fatalf("datagram %d: payload %q (flags %#x), want %q", i, out.Payload, out.Flags, want)
	}
	if got, ok := SockaddrAddrPort(out.Name); !ok || got != src {
		t.Fatalf("datagram %d: source %v, want %v", i, got, src)
	}
	return id
}

func TestMultishotRecvmsgBufferRing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []BufferRingOption
	}{
		{"user-memory", nil},
		{"kernel-mapped", []BufferRingOption{WithKernelMappedRing()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := loopRing(t, 16)
			br, err := r.NewBufferRing(7, 16, 256, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			srv, srvAddr := udpSocket(t)
			cli, cliAddr := udpSocket(t)
			msg := recvmsgTemplate()
			if _, err := r.PrepRecvmsgMultishot(srv, msg, br.Group(), 0, 1); err != nil {
				t.Fatal(err)
			}
			if _, err := r.SubmitAndWait(0, 0); err != nil {
				t.Fatal(err)
			}
			const n = 10
			sendDatagrams(t, cli, srvAddr, 0, n)
			got := collect(t, r, n)
			if len(got) != n {
				t.Fatalf("got %d CQEs, want %d: %+v", len(got), n, got)
			}
			for i, c := range got {
				if !c.More() {
					t.Fatalf("datagram %d: multishot ended: %+v", i, c)
				}
				// A fresh ring hands buffers out in the order they were added.
				checkDatagram(t, br, c, i, cliAddr, i)
			}
			// Recycle and go around the ring: ids wrap past the first 16.
			for _, c := range got {
				id, _ := c.BufferID()
				br.Put(id)
			}
			br.Publish()
			sendDatagrams(t, cli, srvAddr, n, n)
			got = collect(t, r, n)
			for i, c := range got {
				checkDatagram(t, br, c, n+i, cliAddr, (n+i)%16)
			}
		})
	}
}

// Four buffers, six datagrams: four arrive, then the multishot ends with
// ENOBUFS instead of hanging; after recycling and re-arming, the two
// datagrams still queued on the socket arrive.
func TestBufferExhaustionAndRecovery(t *testing.T) {
	r := loopRing(t, 16)
	br, err := r.NewBufferRing(3, 4, 128)
	if err != nil {
		t.Fatal(err)
	}
	srv, srvAddr := udpSocket(t)
	cli, cliAddr := udpSocket(t)
	msg := recvmsgTemplate()
	r.PrepRecvmsgMultishot(srv, msg, br.Group(), 0, 1)
	sendDatagrams(t, cli, srvAddr, 0, 6)
	got := collectUntil(t, r, func(c []CQE) bool { return len(c) > 0 && !c[len(c)-1].More() })
	if len(got) != 5 {
		t.Fatalf("got %d CQEs, want 4 datagrams and the ENOBUFS end: %+v", len(got), got)
	}
	var ids []uint16
	for i, c := range got[:4] {
		ids = append(ids, checkDatagram(t, br, c, i, cliAddr, i))
	}
	last := got[4]
	if !last.NoBuffers() || last.More() {
		t.Fatalf("last CQE %+v, want -ENOBUFS without F_MORE", last)
	}
	for _, id := range ids {
		br.Recycle(id)
	}
	r.PrepRecvmsgMultishot(srv, msg, br.Group(), 0, 2)
	got = collect(t, r, 2)
	for i, c := range got {
		if c.UserData != 2 || !c.More() {
			t.Fatalf("re-armed CQE %+v", c)
		}
		checkDatagram(t, br, c, 4+i, cliAddr, -1)
	}
}

func TestMultishotRecvBufferSelect(t *testing.T) {
	r := loopRing(t, 16)
	br, err := r.NewBufferRing(1, 8, 64)
	if err != nil {
		t.Fatal(err)
	}
	srv, srvAddr := udpSocket(t)
	cli, _ := udpSocket(t)
	r.PrepRecvMultishot(srv, br.Group(), 0, 1)
	sendDatagrams(t, cli, srvAddr, 0, 3)
	for i, c := range collect(t, r, 3) {
		id, ok := c.BufferID()
		if !ok || !c.More() || string(br.Buffer(id)[:c.Res]) != fmt.Sprintf("datagram %d", i) {
			t.Fatalf("CQE %d %+v", i, c)
		}
		br.Recycle(id)
	}
	// The multishot recv still picks from the group: closing it now would
	// free buffers the kernel may fill.
	if err := br.Close(); !errors.Is(err, ErrInFlight) {
		t.Fatalf("BufferRing.Close with a multishot recv armed = %v, want ErrInFlight", err)
	}
	if br.closed || br.slab == nil {
		t.Fatal("refused BufferRing.Close freed the buffers")
	}
	r.PrepCancel(1, 0, 2)
	c := collectUntil(t, r, func(c []CQE) bool {
		m := byUserData(c)
		return len(m[1]) > 0 && !m[1][len(m[1])-1].More() && len(m[2]) > 0
	})
	if m := byUserData(c); !m[1][len(m[1])-1].Canceled() {
		t.Fatalf("cancelled multishot recv ended with %+v", m[1])
	}
	if err := br.Close(); err != nil {
		t.Fatalf("BufferRing.Close after the recv ended: %v", err)
	}
	// A receive on the unregistered group fails instead of touching freed
	// memory.
	r.PrepRecvMultishot(srv, br.Group(), 0, 3)
	sendDatagrams(t, cli, srvAddr, 3, 1)
	c = collectUntil(t, r, func(c []CQE) bool { return len(c) > 0 && !c[len(c)-1].More() })
	if last := c[len(c)-1]; last.Res >= 0 || last.UserData != 3 {
		t.Fatalf("receive into an unregistered group: %+v", last)
	}
}

func TestBufferRingTailWord(t *testing.T) {
	r := newRing(t, 4)
	br, err := r.NewBufferRing(2, 4, 32)
	if err != nil {
		t.Fatal(err)
	}
	// After NewBufferRing: four entries published; entry 0 holds id 0.
	w := br.tailWord.Load()
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	if tail, bid0 := binary.NativeEndian.Uint16(b[2:]), binary.NativeEndian.Uint16(b[:]); tail != 4 || bid0 != 0 {
		t.Fatalf("tail word: tail %d, bid0 %d; want 4, 0", tail, bid0)
	}
	for id := uint16(3); id < 4; id-- {
		br.Put(id) // entries 4..7 → slots 0..3; slot 0 gets id 3
	}
	br.Publish()
	binary.NativeEndian.PutUint32(b[:], br.tailWord.Load())
	if tail, bid0 := binary.NativeEndian.Uint16(b[2:]), binary.NativeEndian.Uint16(b[:]); tail != 8 || bid0 != 3 || br.entries[0].bid != 3 {
		t.Fatalf("after wrap: tail %d, bid0 %d; want 8, 3", tail, bid0)
	}
	if _, err := r.NewBufferRing(9, 3, 32); err == nil {
		t.Fatal("NewBufferRing accepted a count that is not a power of two")
	}
}

func TestParseRecvmsgOut(t *testing.T) {
	name := make([]byte, unix.SizeofSockaddrInet6)
	nameLen := PutSockaddr(name, netip.MustParseAddrPort("10.1.2.3:4567"))
	build := func(payload []byte, payloadLen, flags uint32) []byte {
		b := make([]byte, recvmsgOutSize+len(name)+8)
		binary.NativeEndian.PutUint32(b[0:], uint32(nameLen))
		binary.NativeEndian.PutUint32(b[4:], 0)
		binary.NativeEndian.PutUint32(b[8:], payloadLen)
		binary.NativeEndian.PutUint32(b[12:], flags)
		copy(b[recvmsgOutSize:], name)
		return append(b, payload...)
	}
	buf := build([]byte("hello"), 5, 0)
	out, err := ParseRecvmsgOut(buf, len(name), 8)
	if err != nil {
		t.Fatal(err)
	}
	if ap, ok := SockaddrAddrPort(out.Name); !ok || ap.String() != "10.1.2.3:4567" {
		t.Fatalf("name %v", ap)
	}
	if string(out.Payload) != "hello" || len(out.Control) != 0 || out.Truncated() {
		t.Fatalf("out %+v", out)
	}
	out, err = ParseRecvmsgOut(build([]byte("hel"), 5, unix.MSG_TRUNC), len(name), 8)
	if err != nil || string(out.Payload) != "hel" || !out.Truncated() || out.PayloadLen != 5 {
		t.Fatalf("truncated: %+v, %v", out, err)
	}
	if _, err := ParseRecvmsgOut(buf[:20], len(name), 8); err == nil {
		t.Fatal("short buffer accepted")
	}
	if allocs := testing.AllocsPerRun(100, func() { ParseRecvmsgOut(buf, len(name), 8) }); allocs != 0 {
		t.Fatalf("ParseRecvmsgOut allocates %v times", allocs)
	}
	six := netip.MustParseAddrPort("[2001:db8::1]:53")
	var sa [unix.SizeofSockaddrInet6]byte
	if n := PutSockaddr(sa[:], six); n != unix.SizeofSockaddrInet6 {
		t.Fatal(n)
	}
	if got, ok := SockaddrAddrPort(sa[:]); !ok || got != six {
		t.Fatalf("IPv6 round trip: %v", got)
	}
}

func FuzzParseRecvmsgOut(f *testing.F) {
	f.Add(bytes.Repeat([]byte{0}, 16), 0, 0)                                               // empty datagram, no name
	f.Add(append([]byte{28, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0}, make([]byte, 40)...), 28, 0) // name room, payload shorter than claimed
	f.Add([]byte{255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0, 0, 0, 0, 1, 2, 3}, 1, 1)
	f.Fuzz(func(t *testing.T, buf []byte, nameRoom, controlRoom int) {
		if nameRoom > 1<<16 || controlRoom > 1<<16 {
			return
		}
		out, err := ParseRecvmsgOut(buf, nameRoom, controlRoom)
		if err != nil {
			return
		}
		if len(out.Name) > nameRoom || len(out.Control) > controlRoom || 16+nameRoom+controlRoom+len(out.Payload) > len(buf) {
			t.Fatalf("slices exceed the buffer: %d %d %d of %d", len(out.Name), len(out.Control), len(out.Payload), len(buf))
		}
		SockaddrAddrPort(out.Name)
	})
}

// Close with requests in flight — multishot RECVMSG on a buffer ring,
// a timeout, a poll, an accept — cancels them, unmaps everything and
// leaves neither descriptors (leak.Main checks) nor goroutines behind.
func TestCloseWithOperationsInFlight(t *testing.T) {
	for _, kernelMapped := range []bool{false, true} {
		t.Run(fmt.Sprint("kernel-mapped=", kernelMapped), func(t *testing.T) {
			before := leak.Goroutines("zerohop/uring")
			r := newRing(t, 16, WithDeferTaskrun())
			var opts []BufferRingOption
			if kernelMapped {
				opts = append(opts, WithKernelMappedRing())
			}
			br, err := r.NewBufferRing(5, 8, 128, opts...)
			if err != nil {
				t.Fatal(err)
			}
			srv, srvAddr := udpSocket(t)
			cli, _ := udpSocket(t)
			rfd, _ := pipe(t)
			ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			leak.Track(ln)
			closeFd(t, ln)
			unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
			unix.Listen(ln, 4)

			r.PrepRecvmsgMultishot(srv, recvmsgTemplate(), br.Group(), 0, 1)
			r.PrepTimeout(1<<40, 0, 0, 2)
			r.PrepPollAdd(rfd, unix.POLLIN, true, 3)
			r.PrepAcceptMultishot(ln, 0, 4)
			buf := make([]byte, 64)
			r.PrepRead(rfd, buf, ^uint64(0), 5)
			sendDatagrams(t, cli, srvAddr, 0, 2)
			collect(t, r, 2) // two datagrams consumed buffers
			// What Close does first: cancel all five and wait for it.
			if err := r.cancelAll(time.Now().Add(5 * time.Second)); err != nil {
				t.Fatalf("sync cancel of in-flight requests: %v", err)
			}
			r.PrepRecvmsgMultishot(srv, recvmsgTemplate(), br.Group(), 0, 6)
			r.PrepTimeout(1<<40, 0, 0, 7)
			r.Submit()
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if !br.closed || br.slab != nil || br.ringMem != nil {
				t.Fatal("Close left the buffer ring mapped")
			}
			if r.mappings != nil {
				t.Fatal("Close left ring mappings")
			}
			if err := br.Close(); err != nil {
				t.Fatalf("BufferRing.Close after Ring.Close: %v", err)
			}
			if n := leak.Goroutines("zerohop/uring"); n > before {
				t.Fatalf("%d goroutines of uring still running", n-before)
			}
		})
	}
}
