package uring

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/zerohop/zerohop/internal/leak"
	"golang.org/x/sys/unix"
)

func TestNop(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"single-issuer", []Option{WithSingleIssuer()}},
		{"defer-taskrun", []Option{WithDeferTaskrun(), WithCoopTaskrun()}},
		{"coop-taskrun", []Option{WithCoopTaskrun()}},
		{"sqpoll-cpu0", []Option{WithSQPoll(10*time.Millisecond, 0)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, 8, tc.opts...)
			if r.SetupFlags()&setupNoSQArray == 0 {
				t.Errorf("ring set up without NO_SQARRAY on a kernel that has it: flags %s", setupFlagNames(r.SetupFlags()))
			}
			for i := range 3 {
				if _, err := r.PrepNop(uint64(100 + i)); err != nil {
					t.Fatal(err)
				}
			}
			got := collect(t, r, 3)
			for i, c := range got {
				if c.UserData != uint64(100+i) || c.Res != 0 || c.Flags != 0 {
					t.Errorf("CQE %d = %+v, want user data %d, res 0", i, c, 100+i)
				}
			}
		})
	}
}

// More SQEs than the SQ holds: GetSQE must flush and retry, and every
// completion must arrive once, even when the CQ overflows into the kernel's
// backlog and ours.
func TestSQOverflowFlushesAndRetries(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []Option
	}{
		{"plain", nil},
		{"defer-taskrun", []Option{WithDeferTaskrun()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRing(t, 8, tc.opts...) // CQ: 16
			const n = 200
			for i := range n {
				if _, err := r.PrepNop(uint64(i)); err != nil {
					t.Fatalf("nop %d: %v", i, err)
				}
			}
			got := collect(t, r, n)
			if len(got) != n {
				t.Fatalf("got %d CQEs, want %d", len(got), n)
			}
			seen := make([]bool, n)
			for _, c := range got {
				if c.UserData >= n || seen[c.UserData] || c.Res != 0 {
					t.Fatalf("unexpected CQE %+v", c)
				}
				seen[c.UserData] = true
			}
		})
	}
}

func TestReserveKeepsLinkedChainTogether(t *testing.T) {
	r := newRing(t, 4)
	for i := range 3 {
		r.PrepNop(uint64(i))
	}
	if err := r.Reserve(3); err != nil {
		t.Fatal(err)
	}
	if space := r.SQSpace(); space < 3 {
		t.Fatalf("after Reserve(3), SQSpace = %d", space)
	}
	if err := r.Reserve(5); err == nil {
		t.Fatal("Reserve beyond the SQ size succeeded")
	}
	collect(t, r, 3)
}

func TestSubmitAndWaitTimesOut(t *testing.T) {
	r := loopRing(t, 8)
	start := time.Now()
	n, err := r.SubmitAndWait(1, 20*time.Millisecond)
	if err != nil || n != 0 {
		t.Fatalf("SubmitAndWait = %d, %v; want 0, nil", n, err)
	}
	if elapsed := time.Since(start); elapsed < 20*time.Millisecond {
		t.Fatalf("returned after %v, before the timeout", elapsed)
	}
	var buf [4]CQE
	if k := r.Reap(buf[:]); k != 0 {
		t.Fatalf("reaped %d CQEs from an idle ring", k)
	}
}

// Subtests run on goroutines of their own, so each makes its own ring: an
// event-loop ring belongs to the thread that created it.

func TestTimeout(t *testing.T) {
	t.Run("fires", func(t *testing.T) {
		r := loopRing(t, 8)
		r.PrepTimeout(5*time.Millisecond, 0, 0, 1)
		c := collect(t, r, 1)[0]
		if c.UserData != 1 || !c.TimedOut() {
			t.Fatalf("CQE %+v, want -ETIME", c)
		}
	})
	t.Run("count", func(t *testing.T) {
		r := loopRing(t, 8)
		r.PrepTimeout(time.Hour, 1, 0, 2)
		r.PrepNop(3)
		m := byUserData(collect(t, r, 2))
		if c := m[2]; len(c) != 1 || c[0].Res != 0 {
			t.Fatalf("timeout with count 1 after a NOP: %+v, want res 0", c)
		}
	})
	t.Run("remove", func(t *testing.T) {
		r := loopRing(t, 8)
		r.PrepTimeout(time.Hour, 0, 0, 4)
		if _, err := r.SubmitAndWait(0, 0); err != nil {
			t.Fatal(err)
		}
		r.PrepTimeoutRemove(4, 5)
		m := byUserData(collect(t, r, 2))
		if c := m[4]; len(c) != 1 || !c[0].Canceled() {
			t.Fatalf("removed timeout: %+v, want -ECANCELED", c)
		}
		if c := m[5]; len(c) != 1 || c[0].Res != 0 {
			t.Fatalf("timeout remove: %+v, want 0", c)
		}
	})
}

func TestLinkTimeoutCancelsRecv(t *testing.T) {
	r := loopRing(t, 8)
	fd, _ := udpSocket(t)
	buf := make([]byte, 64)
	if err := r.Reserve(2); err != nil {
		t.Fatal(err)
	}
	sqe, _ := r.PrepRecv(fd, buf, 0, 1)
	sqe.Flags |= SQEIOLink
	r.PrepLinkTimeout(10*time.Millisecond, 0, 2)
	m := byUserData(collect(t, r, 2))
	if c := m[1]; len(c) != 1 || !c[0].Canceled() {
		t.Fatalf("recv: %+v, want -ECANCELED", c)
	}
	if c := m[2]; len(c) != 1 || !c[0].TimedOut() {
		t.Fatalf("link timeout: %+v, want -ETIME", c)
	}
}

func TestAsyncCancel(t *testing.T) {
	r := loopRing(t, 8)
	fd, _ := udpSocket(t)
	buf := make([]byte, 64)
	r.PrepRecv(fd, buf, 0, 1)
	if _, err := r.SubmitAndWait(0, 0); err != nil {
		t.Fatal(err)
	}
	r.PrepCancel(1, 0, 2)
	m := byUserData(collect(t, r, 2))
	if c := m[1]; len(c) != 1 || !c[0].Canceled() {
		t.Fatalf("recv: %+v, want -ECANCELED", c)
	}
	if c := m[2]; len(c) != 1 || c[0].Res != 0 {
		t.Fatalf("cancel: %+v, want 0", c)
	}
	r.PrepCancel(99, 0, 3)
	if c := collect(t, r, 1)[0]; !errors.Is(c.Err(), unix.ENOENT) {
		t.Fatalf("cancel of nothing: %+v, want -ENOENT", c)
	}
	r.PrepRecv(fd, buf, 0, 4)
	r.PrepRecv(fd, buf, 0, 5)
	r.SubmitAndWait(0, 0)
	r.PrepCancelFd(fd, CancelAll, 6)
	m = byUserData(collect(t, r, 3))
	if c := m[6]; len(c) != 1 || c[0].Res != 2 {
		t.Fatalf("cancel by fd: %+v, want 2 cancelled", c)
	}
}

func TestPoll(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		t.Fatal(err)
	}
	leak.Track(efd)
	closeFd(t, efd)
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	var drain [8]byte

	t.Run("single", func(t *testing.T) {
		r := loopRing(t, 8)
		r.PrepPollAdd(efd, unix.POLLIN, false, 1)
		r.SubmitAndWait(0, 0)
		unix.Write(efd, one)
		c := collect(t, r, 1)[0]
		if c.UserData != 1 || c.Res&unix.POLLIN == 0 || c.More() {
			t.Fatalf("poll CQE %+v, want POLLIN without F_MORE", c)
		}
		unix.Read(efd, drain[:])
	})
	t.Run("multishot", func(t *testing.T) {
		r := loopRing(t, 8)
		r.PrepPollAdd(efd, unix.POLLIN, true, 2)
		r.SubmitAndWait(0, 0)
		for i := range 3 {
			unix.Write(efd, one)
			c := collect(t, r, 1)
			if len(c) != 1 || c[0].UserData != 2 || c[0].Res&unix.POLLIN == 0 || !c[0].More() {
				t.Fatalf("wakeup %d: %+v, want one POLLIN CQE with F_MORE", i, c)
			}
			unix.Read(efd, drain[:])
		}
		r.PrepPollRemove(2, 3)
		m := byUserData(collect(t, r, 2))
		if c := m[2]; len(c) != 1 || !c[0].Canceled() || c[0].More() {
			t.Fatalf("removed poll: %+v, want -ECANCELED without F_MORE", c)
		}
		if c := m[3]; len(c) != 1 || c[0].Res != 0 {
			t.Fatalf("poll remove: %+v", c)
		}
	})
}

func TestReadWritePipe(t *testing.T) {
	r := loopRing(t, 8)
	rfd, wfd := pipe(t)
	msg := []byte("through the ring")
	in := make([]byte, 64)
	r.PrepWrite(wfd, msg, ^uint64(0), 1)
	r.PrepRead(rfd, in, ^uint64(0), 2)
	m := byUserData(collect(t, r, 2))
	if c := m[1]; len(c) != 1 || int(c[0].Res) != len(msg) {
		t.Fatalf("write: %+v", c)
	}
	if c := m[2]; len(c) != 1 || !bytes.Equal(in[:c[0].Res], msg) {
		t.Fatalf("read: %+v %q", c, in)
	}
}

func TestFixedFilesAndClose(t *testing.T) {
	r := loopRing(t, 8)
	rfd, wfd := pipe(t)
	if err := r.RegisterFiles([]int32{-1, -1, -1}); err != nil {
		t.Fatal(err)
	}
	if n, err := r.UpdateFiles(1, []int32{int32(wfd)}); err != nil || n != 1 {
		t.Fatalf("UpdateFiles = %d, %v", n, err)
	}
	sqe, _ := r.PrepWrite(1, []byte("fixed"), ^uint64(0), 1)
	sqe.Flags |= SQEFixedFile
	if c := collect(t, r, 1)[0]; c.Res != 5 {
		t.Fatalf("fixed-file write: %+v", c)
	}
	got := make([]byte, 16)
	if n, err := unix.Read(rfd, got); err != nil || string(got[:n]) != "fixed" {
		t.Fatalf("read back %q, %v", got[:n], err)
	}
	r.PrepCloseFixed(1, 2)
	if c := collect(t, r, 1)[0]; c.Res != 0 {
		t.Fatalf("close fixed: %+v", c)
	}
	sqe, _ = r.PrepWrite(1, []byte("x"), ^uint64(0), 3)
	sqe.Flags |= SQEFixedFile
	if c := collect(t, r, 1)[0]; !errors.Is(c.Err(), unix.EBADF) {
		t.Fatalf("write to emptied slot: %+v, want -EBADF", c)
	}
	if err := r.UnregisterFiles(); err != nil {
		t.Fatal(err)
	}

	// CLOSE of a plain descriptor.
	fd, err := unix.Dup(rfd)
	if err != nil {
		t.Fatal(err)
	}
	r.PrepClose(fd, 4)
	if c := collect(t, r, 1)[0]; c.Res != 0 {
		t.Fatalf("close: %+v", c)
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Fatalf("fd %d still open after CLOSE: %v", fd, err)
	}
}

func TestSendRecv(t *testing.T) {
	a, _ := udpSocket(t)
	b, bAddr := udpSocket(t)
	if err := unix.Connect(a, sockaddr4(bAddr)); err != nil {
		t.Fatal(err)
	}
	t.Run("send-recv", func(t *testing.T) {
		r := loopRing(t, 16)
		in := make([]byte, 64)
		r.PrepRecv(b, in, 0, 1)
		r.PrepSend(a, []byte("hello"), 0, 2)
		m := byUserData(collect(t, r, 2))
		if c := m[1]; len(c) != 1 || string(in[:c[0].Res]) != "hello" {
			t.Fatalf("recv: %+v %q", c, in)
		}
	})
	t.Run("sendmsg-recvmsg", func(t *testing.T) {
		r := loopRing(t, 16)
		payload := []byte("with a name")
		var to [unix.SizeofSockaddrInet6]byte
		toLen := PutSockaddr(to[:], bAddr)
		sendIov := unix.Iovec{Base: &payload[0]}
		sendIov.SetLen(len(payload))
		sendMsg := &unix.Msghdr{Name: &to[0], Namelen: uint32(toLen), Iov: &sendIov, Iovlen: 1}
		s, _ := udpSocket(t) // unconnected sender
		in := make([]byte, 64)
		var from [unix.SizeofSockaddrInet6]byte
		recvIov := unix.Iovec{Base: &in[0]}
		recvIov.SetLen(len(in))
		recvMsg := &unix.Msghdr{Name: &from[0], Namelen: uint32(len(from)), Iov: &recvIov, Iovlen: 1}
		r.PrepRecvmsg(b, recvMsg, 0, 3)
		r.PrepSendmsg(s, sendMsg, 0, 4)
		m := byUserData(collect(t, r, 2))
		if c := m[4]; len(c) != 1 || int(c[0].Res) != len(payload) {
			t.Fatalf("sendmsg: %+v", c)
		}
		c := m[3]
		if len(c) != 1 || !bytes.Equal(in[:c[0].Res], payload) {
			t.Fatalf("recvmsg: %+v %q", c, in)
		}
		src, ok := SockaddrAddrPort(from[:recvMsg.Namelen])
		if want := localAddr(t, s); !ok || src != want {
			t.Fatalf("recvmsg source %v, want %v", src, want)
		}
	})
	t.Run("send-zc", func(t *testing.T) {
		r := loopRing(t, 16)
		payload := bytes.Repeat([]byte("z"), 1000)
		r.PrepSendZC(a, payload, 0, SendZCReportUsage, 5)
		got := collectUntil(t, r, func(c []CQE) bool { return len(c) > 0 && !c[len(c)-1].More() })
		if len(got) != 2 || got[0].Res != int32(len(payload)) || !got[0].More() || !got[1].Notif() || got[1].UserData != 5 {
			t.Fatalf("SEND_ZC CQEs %+v, want result with F_MORE then a notification", got)
		}
		in := make([]byte, 2000)
		n, _, err := unix.Recvfrom(b, in, unix.MSG_DONTWAIT)
		if err != nil || n != len(payload) {
			t.Fatalf("peer got %d bytes, %v", n, err)
		}
	})
}

func TestAcceptConnect(t *testing.T) {
	r := loopRing(t, 16)
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	leak.Track(ln)
	closeFd(t, ln)
	if err := unix.Bind(ln, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 16); err != nil {
		t.Fatal(err)
	}
	lnAddr := localAddr(t, ln)
	var sa [unix.SizeofSockaddrInet6]byte
	saLen := PutSockaddr(sa[:], lnAddr)

	const clients = 3
	r.PrepAcceptMultishot(ln, unix.SOCK_CLOEXEC, 1)
	for i := range clients {
		c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		leak.Track(c)
		closeFd(t, c)
		r.PrepConnect(c, sa[:saLen], uint64(10+i))
	}
	m := byUserData(collectUntil(t, r, func(got []CQE) bool {
		m := byUserData(got)
		return len(m[1]) == clients && len(got) == 2*clients
	}))
	for _, c := range m[1] {
		if c.Res < 0 || !c.More() {
			t.Fatalf("multishot accept CQE %+v", c)
		}
		leak.Track(int(c.Res))
		closeFd(t, int(c.Res))
	}
	for i := range clients {
		if c := m[uint64(10+i)]; len(c) != 1 || c[0].Res != 0 {
			t.Fatalf("connect %d: %+v", i, c)
		}
	}
	r.PrepCancel(1, 0, 2)
	m = byUserData(collect(t, r, 2))
	if c := m[1]; len(c) != 1 || !c[0].Canceled() || c[0].More() {
		t.Fatalf("cancelled multishot accept: %+v", c)
	}

	// A single-shot accept.
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	leak.Track(c)
	closeFd(t, c)
	r.PrepAccept(ln, unix.SOCK_CLOEXEC, 3)
	r.PrepConnect(c, sa[:saLen], 4)
	m = byUserData(collect(t, r, 2))
	if a := m[3]; len(a) != 1 || a[0].Res < 0 || a[0].More() {
		t.Fatalf("accept: %+v", a)
	} else {
		leak.Track(int(a[0].Res))
		closeFd(t, int(a[0].Res))
	}
}

// MSG_RING from a ring on one thread to a ring on another, both
// DEFER_TASKRUN event-loop rings.
func TestMsgRingAcrossThreads(t *testing.T) {
	targetFd := make(chan int)
	result := make(chan error, 1)
	release := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r, err := New(8, WithDeferTaskrun())
		if err != nil {
			close(targetFd)
			result <- err
			return
		}
		defer r.Close()
		targetFd <- r.Fd()
		var buf [4]CQE
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := r.SubmitAndWait(1, 50*time.Millisecond); err != nil {
				result <- err
				return
			}
			if k := r.Reap(buf[:]); k > 0 {
				if k != 1 || buf[0].UserData != 0xfeed || buf[0].Res != 42 || buf[0].Flags != 0x100 {
					result <- fmt.Errorf("target ring got %+v", buf[:k])
				} else {
					result <- nil
				}
				<-release
				return
			}
		}
		result <- errors.New("no MSG_RING CQE within 10s")
	}()
	fd, ok := <-targetFd
	if !ok {
		t.Fatal(<-result)
	}
	defer close(release)
	r := loopRing(t, 8)
	r.PrepMsgRing(fd, 42, 0xfeed, MsgRingFlagsPass, 0x100, 1)
	if c := collect(t, r, 1)[0]; c.Res != 0 || c.UserData != 1 {
		t.Fatalf("sender CQE %+v", c)
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
}

func TestSetupErrors(t *testing.T) {
	_, err := New(0)
	var se *SetupError
	if !errors.As(err, &se) || !errors.Is(err, unix.EINVAL) || se.Hint == "" {
		t.Fatalf("New(0) = %v, want a SetupError wrapping EINVAL with a hint", err)
	}
	for _, errno := range []unix.Errno{unix.EPERM, unix.ENOMEM, unix.ENOSYS} {
		if setupHint(errno, 0) == "" {
			t.Errorf("no hint for %v", errno)
		}
	}
	if got := setupFlagNames(setupSingleIssuer | setupDeferTaskrun | 1<<30); got != "SINGLE_ISSUER|DEFER_TASKRUN|0x40000000" {
		t.Errorf("setupFlagNames = %q", got)
	}
}

func TestClosedRing(t *testing.T) {
	r, err := New(4)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.PrepNop(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("PrepNop after Close: %v", err)
	}
	if _, err := r.SubmitAndWait(1, time.Millisecond); !errors.Is(err, ErrClosed) {
		t.Fatalf("SubmitAndWait after Close: %v", err)
	}
}
