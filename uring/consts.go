package uring

import "strconv"

// Op is an io_uring opcode (enum io_uring_op in linux/io_uring.h).
type Op uint8

// Opcodes. Only the ones this package prepares are named; Probe reports
// every opcode the kernel knows.
const (
	OpNop           Op = 0
	OpPollAdd       Op = 6
	OpPollRemove    Op = 7
	OpSendmsg       Op = 9
	OpRecvmsg       Op = 10
	OpTimeout       Op = 11
	OpTimeoutRemove Op = 12
	OpAccept        Op = 13
	OpAsyncCancel   Op = 14
	OpLinkTimeout   Op = 15
	OpConnect       Op = 16
	OpClose         Op = 19
	OpRead          Op = 22
	OpWrite         Op = 23
	OpSend          Op = 26
	OpRecv          Op = 27
	OpMsgRing       Op = 40
	OpSendZC        Op = 47
	OpSendmsgZC     Op = 48
)

var opNames = map[Op]string{
	OpNop: "NOP", OpPollAdd: "POLL_ADD", OpPollRemove: "POLL_REMOVE",
	OpSendmsg: "SENDMSG", OpRecvmsg: "RECVMSG", OpTimeout: "TIMEOUT",
	OpTimeoutRemove: "TIMEOUT_REMOVE", OpAccept: "ACCEPT",
	OpAsyncCancel: "ASYNC_CANCEL", OpLinkTimeout: "LINK_TIMEOUT",
	OpConnect: "CONNECT", OpClose: "CLOSE", OpRead: "READ", OpWrite: "WRITE",
	OpSend: "SEND", OpRecv: "RECV", OpMsgRing: "MSG_RING",
	OpSendZC: "SEND_ZC", OpSendmsgZC: "SENDMSG_ZC",
}

func (op Op) String() string {
	if s, ok := opNames[op]; ok {
		return s
	}
	return "OP_" + strconv.Itoa(int(op))
}

// minKernel names the first kernel release that knows each opcode.
var opMinKernel = map[Op]string{
	OpNop: "5.1", OpPollAdd: "5.1", OpPollRemove: "5.1", OpSendmsg: "5.3",
	OpRecvmsg: "5.3", OpTimeout: "5.4", OpTimeoutRemove: "5.5",
	OpAccept: "5.5", OpAsyncCancel: "5.5", OpLinkTimeout: "5.5",
	OpConnect: "5.5", OpClose: "5.6", OpRead: "5.6", OpWrite: "5.6",
	OpSend: "5.6", OpRecv: "5.6", OpMsgRing: "5.18", OpSendZC: "6.0",
	OpSendmsgZC: "6.1",
}

// UsedOps lists the opcodes zerohop prepares, in a stable order.
var UsedOps = []Op{
	OpNop, OpPollAdd, OpPollRemove, OpRecv, OpRecvmsg, OpSend, OpSendmsg,
	OpSendZC, OpAccept, OpConnect, OpRead, OpWrite, OpTimeout,
	OpLinkTimeout, OpTimeoutRemove, OpAsyncCancel, OpMsgRing, OpClose,
}

// SQE flags (sqe->flags, IOSQE_*).
const (
	// SQEFixedFile: Fd is an index into the registered file table.
	SQEFixedFile uint8 = 1 << 0
	// SQEIODrain: start only after all earlier submissions completed.
	SQEIODrain uint8 = 1 << 1
	// SQEIOLink: the next SQE starts only after this one succeeded.
	SQEIOLink uint8 = 1 << 2
	// SQEIOHardlink: like SQEIOLink, but the chain survives failure.
	SQEIOHardlink uint8 = 1 << 3
	// SQEAsync: always punt to the io-wq worker pool.
	SQEAsync uint8 = 1 << 4
	// SQEBufferSelect: pick the buffer from the provided-buffer group in
	// BufIndex.
	SQEBufferSelect uint8 = 1 << 5
	// SQECQESkipSuccess: post no CQE when the operation succeeds.
	SQECQESkipSuccess uint8 = 1 << 6
)

// io_uring_setup flags.
const (
	setupIOPoll        = 1 << 0
	setupSQPoll        = 1 << 1
	setupSQAff         = 1 << 2
	setupCQSize        = 1 << 3
	setupClamp         = 1 << 4
	setupSubmitAll     = 1 << 7
	setupCoopTaskrun   = 1 << 8
	setupTaskrunFlag   = 1 << 9
	setupSingleIssuer  = 1 << 12
	setupDeferTaskrun  = 1 << 13
	setupNoMmap        = 1 << 14
	setupNoSQArray     = 1 << 16
	enterGetEvents     = 1 << 0
	enterSQWakeup      = 1 << 1
	enterSQWait        = 1 << 2
	enterExtArg        = 1 << 3
	sqNeedWakeup       = 1 << 0
	sqCQOverflow       = 1 << 1
	sqTaskrun          = 1 << 2
	offSQRing          = 0
	offCQRing          = 0x8000000
	offSQEs            = 0x10000000
	offPbufRing        = 0x80000000
	offPbufShift       = 16
	ioURingOpSupported = 1 << 0
)

// Feature bits reported by io_uring_setup (IORING_FEAT_*).
const (
	FeatSingleMmap     uint32 = 1 << 0
	FeatNoDrop         uint32 = 1 << 1
	FeatSubmitStable   uint32 = 1 << 2
	FeatFastPoll       uint32 = 1 << 5
	FeatPoll32Bits     uint32 = 1 << 6
	FeatSQPollNonfixed uint32 = 1 << 7
	FeatExtArg         uint32 = 1 << 8
	FeatNativeWorkers  uint32 = 1 << 9
	FeatCQESkip        uint32 = 1 << 11
	FeatLinkedFile     uint32 = 1 << 12
	FeatRecvsendBundle uint32 = 1 << 14
	FeatMinTimeout     uint32 = 1 << 15
)

// io_uring_register opcodes.
const (
	registerFiles        = 2
	unregisterFiles      = 3
	registerFilesUpdate  = 6
	registerProbe        = 8
	registerPbufRing     = 22
	unregisterPbufRing   = 23
	registerSyncCancel   = 24
	pbufRingMmap         = 1 // IOU_PBUF_RING_MMAP
	rsrcRegisterSparse   = 1
	registerFilesSkipped = -2
)

// Poll flags, carried in sqe->len for POLL_ADD / POLL_REMOVE.
const (
	pollAddMulti    = 1 << 0
	pollUpdateEvent = 1 << 1
	pollUpdateData  = 1 << 2
)

// Send/recv flags, carried in sqe->ioprio.
const (
	// RecvsendPollFirst arms poll before trying the transfer (for sockets
	// that are known to be empty / full).
	RecvsendPollFirst uint16 = 1 << 0
	recvMultishot     uint16 = 1 << 1
	// SendZCReportUsage asks SEND_ZC's notification CQE to say (in Res
	// bit 31) whether the data was copied after all.
	SendZCReportUsage uint16 = 1 << 3
	acceptMultishot   uint16 = 1 << 0
)

// Timeout flags (sqe->timeout_flags).
const (
	// TimeoutAbs: the timespec is an absolute CLOCK_MONOTONIC time.
	TimeoutAbs    uint32 = 1 << 0
	timeoutUpdate        = 1 << 1
	// TimeoutBoottime / TimeoutRealtime pick another clock.
	TimeoutBoottime uint32 = 1 << 2
	TimeoutRealtime uint32 = 1 << 3
	// TimeoutEtimeSuccess: a fired timeout counts as success for links
	// and CQE_SKIP_SUCCESS.
	TimeoutEtimeSuccess uint32 = 1 << 5
	// TimeoutMultishot: fire repeatedly (count times, 0 = forever), 6.4+.
	TimeoutMultishot uint32 = 1 << 6
)

// Cancel flags (sqe->cancel_flags).
const (
	// CancelAll cancels every match instead of the first.
	CancelAll uint32 = 1 << 0
	// CancelFd matches on the file descriptor instead of user_data.
	CancelFd uint32 = 1 << 1
	// CancelAny matches every request.
	CancelAny uint32 = 1 << 2
	// CancelFdFixed: the fd is a fixed-file index.
	CancelFdFixed uint32 = 1 << 3
)

// MSG_RING commands and flags.
const (
	msgRingData = 0
	// MsgRingCQESkip posts nothing to the target (only with MSG_SEND_FD).
	MsgRingCQESkip uint32 = 1 << 0
	// MsgRingFlagsPass puts the given flags into the target CQE's flags.
	MsgRingFlagsPass uint32 = 1 << 1
)

// CQE flags.
const (
	// CQEFBuffer: bits 16–31 of Flags hold the provided-buffer id used.
	CQEFBuffer uint32 = 1 << 0
	// CQEFMore: the request stays armed and will post more CQEs.
	CQEFMore uint32 = 1 << 1
	// CQEFSockNonempty: the socket had more data after this receive.
	CQEFSockNonempty uint32 = 1 << 2
	// CQEFNotif: a SEND_ZC notification: the kernel no longer uses the
	// send buffer.
	CQEFNotif uint32 = 1 << 3
	// CQEFBufMore: an incrementally consumed buffer is not done yet.
	CQEFBufMore uint32 = 1 << 4

	cqeBufferShift = 16
)

// NotifUsageZCCopied is set in a notification CQE's Res when
// SendZCReportUsage was asked and the kernel copied the data anyway.
const NotifUsageZCCopied = int32(-1 << 31)
