package uring

// SQE is one submission queue entry, laid out as struct io_uring_sqe (64
// bytes). The Prep* methods of Ring fill it; callers may adjust fields
// afterwards (typically Flags) until the next Submit publishes it.
//
// An SQE lives in memory shared with the kernel: never keep a pointer to it
// across a Submit, and never store Go pointers in it except through the
// Prep* methods, which keep the referenced memory reachable.
type SQE struct {
	Opcode   Op
	Flags    uint8  // SQE* flags
	Ioprio   uint16 // ioprio, or per-opcode flags (recv/send/accept)
	Fd       int32  // file descriptor, or fixed-file index with SQEFixedFile
	Off      uint64 // off / addr2
	Addr     uint64 // addr / splice_off_in
	Len      uint32
	OpFlags  uint32 // rw_flags, msg_flags, poll32_events, timeout_flags, ...
	UserData uint64 // returned unchanged in the CQE; an index, never a pointer
	// BufIndex is buf_index or, with SQEBufferSelect, buf_group.
	BufIndex    uint16
	Personality uint16
	// FileIndex is splice_fd_in / file_index / addr_len.
	FileIndex uint32
	Addr3     uint64
	_         uint64
}

// CQE is one completion queue entry, laid out as struct io_uring_cqe.
type CQE struct {
	UserData uint64 // the SQE's UserData
	Res      int32  // result: ≥ 0 on success, -errno on failure
	Flags    uint32 // CQEF* flags
}

// Err returns nil when Res is non-negative and the errno otherwise, as a
// unix.Errno (compare with errors.Is).
func (c *CQE) Err() error {
	if c.Res >= 0 {
		return nil
	}
	return errnoErr(-c.Res)
}

// More reports whether the request that posted this CQE stays armed
// (IORING_CQE_F_MORE). A multishot CQE without it is the last one: re-arm
// the request if you still want completions.
func (c *CQE) More() bool { return c.Flags&CQEFMore != 0 }

// BufferID returns the provided-buffer id this completion consumed, if it
// consumed one (IORING_CQE_F_BUFFER). The buffer belongs to the caller
// until it is recycled into its BufferRing.
func (c *CQE) BufferID() (id uint16, ok bool) {
	if c.Flags&CQEFBuffer == 0 {
		return 0, false
	}
	return uint16(c.Flags >> cqeBufferShift), true
}

// Notif reports whether this is a SEND_ZC notification CQE: the kernel is
// done with the send buffer (IORING_CQE_F_NOTIF).
func (c *CQE) Notif() bool { return c.Flags&CQEFNotif != 0 }

// NoBuffers reports whether the request failed because its provided-buffer
// group was empty (-ENOBUFS). A multishot receive ends with this CQE (More
// is false): recycle buffers, then prepare the receive again.
func (c *CQE) NoBuffers() bool { return c.Res == -int32(enobufs) }

// Canceled reports whether the request was cancelled (-ECANCELED), by
// ASYNC_CANCEL, TIMEOUT_REMOVE, a link failure or Close.
func (c *CQE) Canceled() bool { return c.Res == -int32(ecanceled) }

// TimedOut reports whether a TIMEOUT or LINK_TIMEOUT fired (-ETIME).
func (c *CQE) TimedOut() bool { return c.Res == -int32(etime) }
