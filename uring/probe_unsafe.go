package uring

import (
	"unsafe"
)

// probeHeader is struct io_uring_probe without its flexible ops array;
// probeOp is struct io_uring_probe_op.
type probeHeader struct {
	lastOp uint8
	opsLen uint8
	resv   uint16
	resv2  [3]uint32
}

type probeOp struct {
	op    uint8
	resv  uint8
	flags uint16
	resv2 uint32
}

type probeBuf struct {
	probeHeader
	ops [256]probeOp
}

func (r *Ring) probeOps(p *ProbeResult) error {
	var buf probeBuf
	if _, err := r.register(registerProbe, unsafe.Pointer(&buf), uint32(len(buf.ops))); err != nil {
		return err
	}
	p.LastOp = Op(buf.lastOp)
	for _, o := range buf.ops[:buf.opsLen] {
		if o.flags&ioURingOpSupported != 0 {
			p.ops[o.op] = true
		}
	}
	return nil
}
