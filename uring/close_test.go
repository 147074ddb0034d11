package uring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"
	"weak"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

// lockedThread runs functions on one locked OS thread, the way an event
// loop owns its ring, while the test goroutine stays on other threads.
type lockedThread struct {
	fns  chan func() error
	errs chan error
}

func newLockedThread(t *testing.T) *lockedThread {
	lt := &lockedThread{fns: make(chan func() error), errs: make(chan error)}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for fn := range lt.fns {
			lt.errs <- fn()
		}
	}()
	t.Cleanup(func() { close(lt.fns) })
	return lt
}

func (lt *lockedThread) do(t *testing.T, fn func() error) {
	t.Helper()
	lt.fns <- fn
	if err := <-lt.errs; err != nil {
		t.Fatal(err)
	}
}

// reapUntil is collectUntil for code that must not call t.Fatal (it runs
// on a lockedThread).
func reapUntil(r *Ring, done func([]CQE) bool) ([]CQE, error) {
	var got []CQE
	buf := make([]CQE, 64)
	deadline := time.Now().Add(10 * time.Second)
	for !done(got) {
		if time.Now().After(deadline) {
			return got, fmt.Errorf("completions did not arrive within 10s; got %+v", got)
		}
		if _, err := r.SubmitAndWait(1, 50*time.Millisecond); err != nil {
			return got, err
		}
		got = append(got, buf[:r.Reap(buf)]...)
	}
	return got, nil
}

// isRingFd reports whether fd is (still) an io_uring descriptor.
func isRingFd(fd int) bool {
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && target == "anon_inode:[io_uring]"
}

func eventfd(t *testing.T) int {
	t.Helper()
	// Blocking, like a loop's wakeup descriptor: the READ waits in poll.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	leak.Track(efd)
	closeFd(t, efd)
	return efd
}

func lastOf(cqes []CQE) (CQE, bool) {
	if len(cqes) == 0 {
		return CQE{}, false
	}
	return cqes[len(cqes)-1], true
}

// Close on another thread than a DEFER_TASKRUN ring's own, with a blocked
// READ on an eventfd and a multishot RECVMSG in flight: the kernel refuses
// to cancel from there, so Close must refuse too and leave the ring whole —
// descriptor, mappings, buffer ring, kept buffers — which the requests
// then prove by completing into that memory. Close on the ring's thread
// afterwards cancels both and reaps their last CQEs before releasing.
func TestCloseOnAnotherThreadKeepsEverything(t *testing.T) {
	owner := newLockedThread(t)
	efd := eventfd(t)
	srv, srvAddr := udpSocket(t)
	cli, cliAddr := udpSocket(t)
	var (
		r      *Ring
		br     *BufferRing
		readTo = new([64]byte)
		msg    = recvmsgTemplate()
	)
	const (
		udRead = 1 + iota
		udRecv
		udRead2
	)
	owner.do(t, func() (err error) {
		if r, err = New(16, WithDeferTaskrun(), WithCoopTaskrun()); err != nil {
			return err
		}
		if br, err = r.NewBufferRing(4, 8, 256); err != nil {
			return err
		}
		r.PrepRead(efd, readTo[:8], ^uint64(0), udRead)
		r.PrepRecvmsgMultishot(srv, msg, br.Group(), 0, udRecv)
		_, err = r.SubmitAndWait(0, 0)
		return err
	})
	ringFd := r.Fd()
	t.Cleanup(func() {
		if r.fd >= 0 { // the test failed before the owner closed it
			owner.fns <- func() error { return r.Close() }
			<-owner.errs
		}
	})

	err := r.Close()
	if !errors.Is(err, ErrWrongThread) {
		t.Fatalf("Close on another thread with requests in flight = %v, want ErrWrongThread", err)
	}
	t.Logf("refused: %v", err)
	if r.fd != ringFd || !isRingFd(ringFd) || r.mappings == nil || r.sq.sqes == nil || br.closed || br.slab == nil {
		t.Fatal("refused Close released part of the ring")
	}
	if !r.inflight.holds(udRead, &readTo[0]) || !r.inflight.holds(udRecv, msg) {
		t.Fatal("refused Close dropped the requests' memory")
	}

	// Still armed, still mapped: the READ fills the kept buffer, the
	// multishot fills a provided buffer.
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 0x5eed)
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	sendDatagrams(t, cli, srvAddr, 0, 1)
	var got []CQE
	owner.do(t, func() (err error) {
		got, err = reapUntil(r, func(c []CQE) bool {
			m := byUserData(c)
			return len(m[udRead]) == 1 && len(m[udRecv]) == 1
		})
		return err
	})
	m := byUserData(got)
	if c := m[udRead][0]; c.Res != 8 || binary.NativeEndian.Uint64(readTo[:8]) != 0x5eed {
		t.Fatalf("READ after the refused Close: %+v, buffer %x", c, readTo[:8])
	}
	if c := m[udRecv][0]; !c.More() {
		t.Fatalf("multishot RECVMSG ended after the refused Close: %+v", c)
	} else {
		checkDatagram(t, br, c, 0, cliAddr, 0)
	}

	// On the owner: both requests in flight again, then a Close that must
	// cancel them and reap their last CQEs before releasing anything.
	var closing []CQE
	owner.do(t, func() error {
		r.PrepRead(efd, readTo[:8], ^uint64(0), udRead2)
		if _, err := r.SubmitAndWait(0, 0); err != nil {
			return err
		}
		r.closeHook = func(c CQE) { closing = append(closing, c) }
		return r.Close()
	})
	m = byUserData(closing)
	if c, ok := lastOf(m[udRead2]); !ok || !c.Canceled() {
		t.Fatalf("Close did not reap the cancelled READ: %+v", closing)
	}
	if c, ok := lastOf(m[udRecv]); !ok || !c.Canceled() || c.More() {
		t.Fatalf("Close did not reap the multishot RECVMSG's last CQE: %+v", closing)
	}
	if r.fd >= 0 || isRingFd(ringFd) || r.mappings != nil || !br.closed || r.inflight.live != 0 {
		t.Fatal("Close on the owning thread left the ring open or mapped")
	}
}

// What Close may still do on another thread: with nothing in flight that
// holds memory (here a POLL_ADD, which only names a descriptor), nothing
// the kernel writes can land in freed memory, so it closes. A pinned
// skip-success SENDMSG is memory the kernel may read: refused.
func TestCloseOnAnotherThreadWithNothingHeld(t *testing.T) {
	owner := newLockedThread(t)
	efd := eventfd(t)
	a, _ := udpSocket(t)
	_, bAddr := udpSocket(t)
	if err := unix.Connect(a, sockaddr4(bAddr)); err != nil {
		t.Fatal(err)
	}
	var r *Ring
	owner.do(t, func() (err error) {
		if r, err = New(8, WithDeferTaskrun()); err != nil {
			return err
		}
		r.PrepPollAdd(efd, unix.POLLIN, true, 1)
		_, err = r.SubmitAndWait(0, 0)
		return err
	})
	fd := r.Fd()
	if err := r.Close(); err != nil {
		t.Fatalf("Close on another thread with only a poll in flight: %v", err)
	}
	if isRingFd(fd) || r.fd >= 0 {
		t.Fatal("ring still open")
	}

	kick := &unix.Msghdr{}
	owner.do(t, func() (err error) {
		if r, err = New(8, WithDeferTaskrun()); err != nil {
			return err
		}
		sqe, err := r.PrepSendmsg(a, kick, 0, 2)
		if err != nil {
			return err
		}
		sqe.Flags |= SQECQESkipSuccess
		_, err = r.SubmitAndWait(0, 0)
		return err
	})
	if err := r.Close(); !errors.Is(err, ErrWrongThread) {
		t.Fatalf("Close on another thread with a pinned SENDMSG = %v, want ErrWrongThread", err)
	}
	owner.do(t, func() error { return r.Close() })
}

// armRead prepares a READ into a buffer only the ring references.
//
//go:noinline
func armRead(r *Ring, fd int, ud uint64) (weak.Pointer[[64]byte], error) {
	buf := new([64]byte)
	_, err := r.PrepRead(fd, buf[:8], ^uint64(0), ud)
	return weak.Make(buf), err
}

// armRecvmsg prepares a multishot RECVMSG whose msghdr only the ring
// references.
//
//go:noinline
func armRecvmsg(r *Ring, fd int, group uint16, ud uint64) (weak.Pointer[unix.Msghdr], error) {
	msg := recvmsgTemplate()
	_, err := r.PrepRecvmsgMultishot(fd, msg, group, 0, ud)
	return weak.Make(msg), err
}

// alive collects garbage and reports whether p's target survived.
func alive[T any](p weak.Pointer[T]) bool {
	runtime.GC()
	runtime.GC()
	return p.Value() != nil
}

// gone collects garbage until p's target is freed (bounded).
func gone[T any](p weak.Pointer[T]) bool {
	for range 20 {
		if !alive(p) {
			return true
		}
	}
	return false
}

// A multishot RECVMSG and a blocked READ keep their memory (msghdr, read
// buffer) reachable only through the ring. Reusing their SQ slots many
// times over for other operations that hold memory must not let the
// garbage collector free it; their last CQE must.
func TestMemoryKeptUntilLastCQE(t *testing.T) {
	r := loopRing(t, 4)
	br, err := r.NewBufferRing(6, 8, 256)
	if err != nil {
		t.Fatal(err)
	}
	efd := eventfd(t)
	srv, srvAddr := udpSocket(t)
	cli, cliAddr := udpSocket(t)
	rfd, wfd := pipe(t)
	msg, err := armRecvmsg(r, srv, br.Group(), 1)
	if err != nil {
		t.Fatal(err)
	}
	buf, err := armRead(r, efd, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.SubmitAndWait(0, 0); err != nil {
		t.Fatal(err)
	}
	// Every SQ slot reused four times by WRITEs and READs of their own.
	for round := range 4 {
		for i := range 2 {
			ud := uint64(100 + 4*round + 2*i)
			r.PrepWrite(wfd, make([]byte, 8), ^uint64(0), ud)
			r.PrepRead(rfd, make([]byte, 8), ^uint64(0), ud+1)
		}
		collect(t, r, 4)
	}
	if !alive(msg) || !alive(buf) {
		t.Fatalf("memory of in-flight requests freed after their SQ slots were reused (msghdr alive %v, read buffer alive %v)", alive(msg), alive(buf))
	}

	// A CQE with F_MORE does not end the multishot: still kept.
	sendDatagrams(t, cli, srvAddr, 0, 1)
	c := collect(t, r, 1)[0]
	if c.UserData != 1 || !c.More() {
		t.Fatalf("CQE %+v, want the multishot's datagram with F_MORE", c)
	}
	checkDatagram(t, br, c, 0, cliAddr, 0)
	if !alive(msg) {
		t.Fatal("multishot msghdr freed after a CQE with F_MORE")
	}

	// Last CQEs: the READ completes, the multishot is cancelled.
	var one [8]byte
	one[0] = 1
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	r.PrepCancel(1, 0, 3)
	collectUntil(t, r, func(got []CQE) bool {
		m := byUserData(got)
		last, ok := lastOf(m[1])
		return ok && !last.More() && len(m[2]) == 1 && len(m[3]) == 1
	})
	if !gone(msg) || !gone(buf) {
		t.Fatal("memory still kept after the requests' last CQEs")
	}
	if r.inflight.live != 0 || r.inflight.pending != 0 {
		t.Fatalf("table not empty after every request ended: live %d, pending %d", r.inflight.live, r.inflight.pending)
	}
}

// A TX kick repeated with one msghdr and one user data under skip-success
// holds one reference, however many kicks were submitted, and keeps it
// until Close (no CQE says the kernel is done with it).
func TestSkipSuccessPinsOnce(t *testing.T) {
	r := loopRing(t, 8)
	a, _ := udpSocket(t)
	_, bAddr := udpSocket(t)
	if err := unix.Connect(a, sockaddr4(bAddr)); err != nil {
		t.Fatal(err)
	}
	kick := &unix.Msghdr{}
	for range 100 {
		sqe, err := r.PrepSendmsg(a, kick, 0, 9)
		if err != nil {
			t.Fatal(err)
		}
		sqe.Flags |= SQECQESkipSuccess
		if _, err := r.SubmitAndWait(0, 0); err != nil {
			t.Fatal(err)
		}
	}
	var cqes [8]CQE
	if n := r.Reap(cqes[:]); n != 0 {
		t.Fatalf("skip-success kicks posted CQEs: %+v", cqes[:n])
	}
	live := 0
	for _, ref := range r.inflight.refs {
		if ref.ref != nil {
			live++
		}
	}
	if r.inflight.live != 1 || live != 1 || r.inflight.pending != 0 || !r.inflight.holds(9, kick) {
		t.Fatalf("100 kicks: %d keys, %d references, %d pending; want 1, 1, 0", r.inflight.live, live, r.inflight.pending)
	}
}

// Prepared but never submitted: Close drops it without the kernel ever
// seeing it (and without waiting for a CQE that will not come).
func TestCloseDropsUnsubmitted(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(8, WithDeferTaskrun())
	if err != nil {
		t.Fatal(err)
	}
	rfd, _ := pipe(t)
	r.PrepRead(rfd, make([]byte, 8), ^uint64(0), 1)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
