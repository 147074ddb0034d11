package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/zerohop/zerohop/internal/leak"
	"github.com/zerohop/zerohop/proto"
	"golang.org/x/sys/unix"
)

// Client calls one GWIR server over UDP. It is safe for concurrent use.
//
// A Client owns one connected kernel UDP socket and one io_uring driven by a
// single goroutine on a locked OS thread (the client loop): requests go out
// as SEND operations, replies come back through a multishot RECVMSG into a
// provided-buffer ring, and the loop sleeps in io_uring_enter until a reply,
// a new request (announced through an eventfd the ring reads) or the next
// retransmission is due.
//
// Delivery is at least once: a request without a reply is sent again, with
// the same request id, after a timeout that doubles each time (see
// WithRetransmission), so the server may run it more than once. The first
// reply with a call's request id completes the call; later copies, and
// replies to calls that already ended, are ignored (counted as Duplicates).
// Request ids are unique per Client.
type Client struct {
	network string
	remote  netip.AddrPort
	local   netip.AddrPort
	cfg     clientConfig

	fd         int // the connected UDP socket
	eventfd    int // callers write it to wake a sleeping loop
	maxPayload int // largest request payload a datagram can carry

	nextID atomic.Uint64
	calls  sync.Pool // *Call, reset

	mu       sync.Mutex
	queue    []*Call         // new calls for the loop, in order
	cancels  []cancelRequest // calls to end early, after queue
	asleep   bool            // the loop sleeps in the ring: wake it through eventfd
	closed   bool            // no new calls; queue is drained by the loop
	closeErr error           // what new calls fail with once closed

	loopDone  chan struct{} // closed when the loop goroutine returned
	closeOnce sync.Once
	closeRes  error

	stats         clientCounters
	lastSocketErr atomic.Pointer[error] // set by the loop, for error messages
}

// cancelRequest asks the loop to end call id with err (a context's error),
// or, for a caller that stopped waiting, to forget it.
type cancelRequest struct {
	id  uint64
	err error
}

// Reply is the answer to a call.
type Reply struct {
	// Status is the response status (StatusOK unless the call returned a
	// *StatusError), or for Ping the PONG status.
	Status proto.Status
	// Payload is the response payload, copied into the buf given to Call or
	// Go (grown only when too small): it is the caller's and stays valid as
	// long as the caller keeps it.
	Payload []byte
}

// Call is one call started by Go, net/rpc style. Its exported fields are
// the caller's to read once the Call arrived on Done; Release then gives
// it back to the Client for reuse.
type Call struct {
	Method string // as given to Go
	Reply  Reply  // the reply; Reply.Payload lies in the buf given to Go
	Err    error  // nil, a *StatusError, or why there was no reply
	Done   chan *Call

	client *Client
	state  atomic.Uint32 // callPending → callCompleting or callAbandoned
	id     uint64
	kind   proto.Kind
	frame  []byte // the encoded request, read by the kernel while sends are in flight
	buf    []byte // the caller's reply buffer
	ctx    context.Context
	stop   func() bool // stops the context.AfterFunc of an async call
	ownCh  chan *Call  // the Done channel of synchronous calls, reused

	// Owned by the loop while the call is in flight.
	sending   int   // SEND operations not completed yet
	attempts  int   // copies sent
	rtoNs     int64 // current retransmission timeout
	dueNs     int64 // when to retransmit, on the loop's clock
	heapIndex int   // position in the loop's timer heap, -1 when not in it
	finished  bool  // the result is decided; waiting only for sends
}

const (
	callPending    uint32 = iota // the loop may complete it
	callCompleting               // the loop owns it and will send it on Done
	callAbandoned                // the caller stopped waiting; the loop recycles it
)

// ClientStats are counters of a Client since Dial.
type ClientStats struct {
	Requests    uint64 // calls and pings sent (first copies)
	Retransmits uint64 // further copies sent
	Replies     uint64 // replies that completed a call
	Duplicates  uint64 // replies whose request id matched no call still waiting
	Malformed   uint64 // datagrams that were not a valid reply
	TooLarge    uint64 // replies cut short by the reply buffer size
	SocketErrs  uint64 // errors reported by the socket (ICMP unreachable …)
}

type clientCounters struct {
	requests, retransmits, replies, duplicates, malformed, tooLarge, socketErrs atomic.Uint64
}

// Dial returns a Client calling the GWIR server at address ("IP:PORT" or
// "host:port") over network "udp", "udp4" or "udp6". The socket is created
// on the calling thread, so in the caller's network namespace. Dial fails
// with the setup error when io_uring (with DeferTaskrun, multishot RECVMSG
// and provided-buffer rings) is not available: there is no fallback.
func Dial(network, address string, opts ...ClientOption) (*Client, error) {
	cfg := defaultClientConfig()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	remote, err := resolveUDP(network, address)
	if err != nil {
		return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
	}
	c := &Client{
		network:  network,
		remote:   remote,
		cfg:      cfg,
		fd:       -1,
		eventfd:  -1,
		loopDone: make(chan struct{}),
	}
	c.calls.New = func() any { return c.allocCall() }
	if err := c.open(); err != nil {
		c.closeFds()
		return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
	}
	ready := make(chan error, 1)
	go c.runLoop(ready)
	if err := <-ready; err != nil {
		<-c.loopDone
		c.closeFds()
		return nil, fmt.Errorf("runtime: dial %s %s: %w", network, address, err)
	}
	return c, nil
}

func resolveUDP(network, address string) (netip.AddrPort, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return netip.AddrPort{}, fmt.Errorf("network %q not supported (want udp, udp4 or udp6)", network)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		ua, rerr := net.ResolveUDPAddr(network, address)
		if rerr != nil {
			return netip.AddrPort{}, rerr
		}
		ap = ua.AddrPort()
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	if !ap.Addr().IsValid() || ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("address %q: need an IP and a non-zero port", address)
	}
	if (network == "udp4" && !ap.Addr().Is4()) || (network == "udp6" && ap.Addr().Is4()) {
		return netip.AddrPort{}, fmt.Errorf("address %v is not a %s address", ap.Addr(), network)
	}
	return ap, nil
}

// open creates the connected socket and the eventfd.
func (c *Client) open() error {
	family := unix.AF_INET6
	c.maxPayload = proto.MaxPayloadUDP6
	if c.remote.Addr().Is4() {
		family = unix.AF_INET
		c.maxPayload = proto.MaxPayloadUDP4
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	leak.Track(fd)
	c.fd = fd
	var sa unix.Sockaddr
	if family == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(c.remote.Port()), Addr: c.remote.Addr().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(c.remote.Port()), Addr: c.remote.Addr().As16()}
	}
	if err := unix.Connect(fd, sa); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	if local, err := unix.Getsockname(fd); err == nil {
		switch a := local.(type) {
		case *unix.SockaddrInet4:
			c.local = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			c.local = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
	}
	// Blocking on purpose: io_uring turns a would-block read into a poll,
	// while on an O_NONBLOCK file it would complete with -EAGAIN.
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	leak.Track(efd)
	c.eventfd = efd
	return nil
}

func (c *Client) closeFds() error {
	var err error
	if c.eventfd >= 0 {
		leak.Untrack(c.eventfd)
		err = unix.Close(c.eventfd)
		c.eventfd = -1
	}
	if c.fd >= 0 {
		leak.Untrack(c.fd)
		if e := unix.Close(c.fd); e != nil && err == nil {
			err = e
		}
		c.fd = -1
	}
	return err
}

// RemoteAddr returns the server's address.
func (c *Client) RemoteAddr() netip.AddrPort { return c.remote }

// LocalAddr returns the address of the Client's socket.
func (c *Client) LocalAddr() netip.AddrPort { return c.local }

// Stats returns the Client's counters.
func (c *Client) Stats() ClientStats {
	s := &c.stats
	return ClientStats{
		Requests:    s.requests.Load(),
		Retransmits: s.retransmits.Load(),
		Replies:     s.replies.Load(),
		Duplicates:  s.duplicates.Load(),
		Malformed:   s.malformed.Load(),
		TooLarge:    s.tooLarge.Load(),
		SocketErrs:  s.socketErrs.Load(),
	}
}

// Call calls method ("pkg.Service/Method") with payload (protobuf
// wire-format fields) and waits for the reply, whose payload it copies into
// buf (grown only when too small). payload and buf are not kept after Call
// returns.
//
// The error is nil for an OK reply, a *StatusError for any other status
// (the Reply is filled in too), ErrClientClosed, or else wraps why no reply
// came: the context's error (Call returns as soon as ctx is done),
// ErrNoReply after the last retransmission, ErrReplyTooLarge, or a
// socket error.
func (c *Client) Call(ctx context.Context, method string, payload, buf []byte) (Reply, error) {
	return c.roundTrip(ctx, proto.KindRequest, method, payload, buf)
}

// Ping sends a PING and returns the PONG's status: proto.PongServing
// while the server serves, proto.PongDraining while it drains.
func (c *Client) Ping(ctx context.Context) (proto.Status, error) {
	r, err := c.roundTrip(ctx, proto.KindPing, "ping", nil, nil)
	return r.Status, err
}

func (c *Client) roundTrip(ctx context.Context, kind proto.Kind, method string, payload, buf []byte) (Reply, error) {
	if err := ctx.Err(); err != nil {
		return Reply{}, c.callError(method, err)
	}
	call := c.getCall()
	call.Done = call.ownCh
	if err := call.prepare(kind, method, payload, buf); err != nil {
		c.putCall(call)
		return Reply{}, err
	}
	if err := c.enqueue(call); err != nil {
		c.putCall(call)
		return Reply{}, err
	}
	id := call.id // once abandoned, the call is the loop's to recycle
	select {
	case <-call.Done:
	case <-ctx.Done():
		if call.state.CompareAndSwap(callPending, callAbandoned) {
			// The loop recycles the call once it sees this (and any send
			// of it completed); call must not be touched any more.
			c.pushCancel(cancelRequest{id: id})
			return Reply{}, c.callError(method, ctx.Err())
		}
		<-call.Done // the loop is completing it right now
	}
	reply, err := call.Reply, call.Err
	c.putCall(call)
	return reply, err
}

// Go starts a call of method with payload and returns at once; the Call
// arrives on done when it completed, its reply payload copied into buf
// (grown only when too small). payload is copied before Go returns; buf
// belongs to the call until it is delivered.
//
// done must be buffered with room for every call that may complete while
// its owner is not receiving: the client loop blocks while done is full.
// With a nil done the Call gets a channel of its own (Call.Done). Go panics
// if done is unbuffered, as net/rpc does.
//
// ctx bounds the call: when it is done, the call completes with its error
// (observed through context.AfterFunc, which costs an allocation per call
// whose context can be cancelled).
//
// Release the Call after reading it to let the Client reuse it.
func (c *Client) Go(ctx context.Context, method string, payload, buf []byte, done chan *Call) *Call {
	call := c.getCall()
	if done == nil {
		done = call.ownCh
	} else if cap(done) == 0 {
		panic("runtime: Client.Go: done channel is unbuffered")
	}
	call.Done = done
	if err := ctx.Err(); err != nil {
		call.Err = c.callError(method, err)
		call.Method = method
		call.deliverNow()
		return call
	}
	if err := call.prepare(proto.KindRequest, method, payload, buf); err != nil {
		call.Err = err
		call.deliverNow()
		return call
	}
	if ctx.Done() != nil {
		call.ctx = ctx
		id := call.id
		call.stop = context.AfterFunc(ctx, func() {
			c.pushCancel(cancelRequest{id: id, err: c.callError(method, ctx.Err())})
		})
	}
	if err := c.enqueue(call); err != nil {
		if call.stop != nil {
			call.stop()
			call.stop = nil
		}
		call.Err = err
		call.deliverNow()
	}
	return call
}

// Release gives a delivered Call back to its Client for reuse. The Call,
// its Reply and Err must not be used afterwards (Reply.Payload, which lies
// in the caller's buf, stays the caller's).
func (call *Call) Release() {
	if call.client != nil {
		call.client.putCall(call)
	}
}

// deliverNow completes a call that never reached the loop.
func (call *Call) deliverNow() {
	call.state.Store(callCompleting)
	call.Done <- call
}

// Close fails every outstanding call with ErrClientClosed, stops the client
// loop, and releases the ring, the socket and the eventfd. It waits for the
// loop to exit. Calls made after Close fail with ErrClientClosed; a second
// Close returns ErrClientClosed.
func (c *Client) Close() error {
	first := false
	c.closeOnce.Do(func() {
		first = true
		c.mu.Lock()
		if !c.closed {
			c.closed = true
			c.closeErr = ErrClientClosed
		}
		if c.asleep {
			c.asleep = false
			c.wake()
		}
		c.mu.Unlock()
		<-c.loopDone
		c.mu.Lock()
		err := c.closeFds()
		c.mu.Unlock()
		if err != nil {
			c.closeRes = fmt.Errorf("runtime: client close: %w", err)
		}
	})
	if !first {
		return ErrClientClosed
	}
	return c.closeRes
}

// enqueue hands call to the loop, waking it if it sleeps.
func (c *Client) enqueue(call *Call) error {
	c.mu.Lock()
	if c.closed {
		err := c.closeErr
		c.mu.Unlock()
		return err
	}
	c.queue = append(c.queue, call)
	if c.asleep {
		// Written under mu so that Close cannot close the eventfd between
		// the decision and the write.
		c.asleep = false
		c.wake()
	}
	c.mu.Unlock()
	return nil
}

func (c *Client) pushCancel(cr cancelRequest) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return // the loop fails or recycles every call it still has
	}
	c.cancels = append(c.cancels, cr)
	if c.asleep {
		c.asleep = false
		c.wake()
	}
	c.mu.Unlock()
}

// eventfdOne is the 8-byte counter increment written to the eventfd; the
// kernel only reads it, so every caller may share it.
var eventfdOne = [8]byte{1}

// wake writes the eventfd; the caller holds mu.
func (c *Client) wake() {
	for {
		_, err := unix.Write(c.eventfd, eventfdOne[:])
		if err != unix.EINTR {
			return // EAGAIN (counter full) still leaves it readable
		}
	}
}

// callError wraps why a call got no answer, naming the last error the
// socket reported (ECONNREFUSED when nobody listens) when it did not
// answer at all.
func (c *Client) callError(method string, err error) error {
	if last := c.lastSocketErr.Load(); last != nil && !errors.Is(err, proto.ErrPayloadTooLarge) {
		return fmt.Errorf("runtime: call %s to %v: %w (last socket error: %w)", method, c.remote, err, *last)
	}
	return fmt.Errorf("runtime: call %s to %v: %w", method, c.remote, err)
}

func (c *Client) allocCall() *Call {
	return &Call{client: c, ownCh: make(chan *Call, 1), heapIndex: -1}
}

func (c *Client) getCall() *Call {
	call := c.calls.Get().(*Call)
	call.state.Store(callPending)
	return call
}

func (c *Client) putCall(call *Call) {
	call.Method, call.Reply, call.Err, call.Done = "", Reply{}, nil, nil
	call.buf, call.ctx, call.stop = nil, nil, nil
	call.sending, call.attempts, call.finished, call.heapIndex = 0, 0, false, -1
	c.calls.Put(call)
}

// prepare assigns the call its request id and encodes the request.
func (call *Call) prepare(kind proto.Kind, method string, payload, buf []byte) error {
	c := call.client
	call.Method, call.kind, call.buf = method, kind, buf
	call.id = c.nextID.Add(1)
	if len(payload) > c.maxPayload {
		return c.callError(method, fmt.Errorf("payload of %d bytes over the %d a datagram carries: %w",
			len(payload), c.maxPayload, proto.ErrPayloadTooLarge))
	}
	need := proto.HeaderLen + len(payload)
	if cap(call.frame) < need {
		call.frame = make([]byte, need, max(need, 256))
	}
	var err error
	if kind == proto.KindPing {
		_, err = proto.EncodePing(call.frame[:need], call.id)
	} else {
		_, err = proto.EncodeRequest(call.frame[:need], call.id, proto.MethodID(method), 0, payload)
	}
	if err != nil {
		return c.callError(method, err)
	}
	call.frame = call.frame[:need]
	return nil
}

// errLoopGone wraps the error that ended the client loop.
func errLoopGone(err error) error {
	if errors.Is(err, ErrClientClosed) {
		return err
	}
	return fmt.Errorf("runtime: client loop failed: %w", err)
}
