package uring

import (
	"errors"
	"fmt"
	"testing"
)

func TestProbe(t *testing.T) {
	p, err := Probe()
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Probe(); again != p {
		t.Fatal("Probe did not cache its result")
	}
	for _, op := range UsedOps {
		if !p.Supports(op) {
			t.Errorf("opcode %v reported unsupported on Linux 6.18", op)
		}
		if err := HaveOp(op); err != nil {
			t.Errorf("HaveOp(%v) = %v", op, err)
		}
	}
	if p.LastOp < OpSendmsgZC {
		t.Errorf("LastOp %v, want at least SENDMSG_ZC", p.LastOp)
	}
	for name, have := range map[string]func() error{
		"SingleIssuer": HaveSingleIssuer, "DeferTaskrun": HaveDeferTaskrun,
		"CoopTaskrun": HaveCoopTaskrun, "SQPoll": HaveSQPoll, "NoSQArray": HaveNoSQArray,
		"ExtArg": HaveExtArg, "CQESkip": HaveCQESkip, "BufferRing": HaveBufferRing,
		"BufferRingMmap": HaveBufferRingMmap, "MultishotAccept": HaveMultishotAccept,
		"MultishotRecv": HaveMultishotRecv, "SendZC": HaveSendZC, "MsgRing": HaveMsgRing,
	} {
		if err := have(); err != nil {
			t.Errorf("Have%s on Linux 6.18: %v", name, err)
		}
	}
	if p.Supports(255) {
		t.Error("opcode 255 reported supported")
	}
	if err := HaveOp(255); !IsNotSupported(err) {
		t.Errorf("HaveOp(255) = %v, want ErrNotSupported", err)
	}
}

func TestHaveErrorNamesKernel(t *testing.T) {
	err := have(false, "IORING_SETUP_DEFER_TASKRUN", "6.1")
	if !errors.Is(err, ErrNotSupported) || fmt.Sprint(err) != "IORING_SETUP_DEFER_TASKRUN (Linux 6.1): not supported by this kernel" {
		t.Fatalf("have(false) = %v", err)
	}
}
