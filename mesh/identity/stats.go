package identity

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"text/tabwriter"
	"time"
)

// SessionStats is one session as `zerohop stat` shows it.
type SessionStats struct {
	LocalID, RemoteID uint32
	Role              Role
	Peer              string     // the peer's SPIFFE ID
	PeerAddr          netip.Addr // where its handshake came from
	Suite             Suite
	Established       time.Time
	Expires           time.Time
	SendKeyAge        time.Duration // since the current sending key was made
	RecvKeyAge        time.Duration // since the current receiving key took over
	SendKeyUpdates    uint64
	RecvKeyUpdates    uint64
	Sealed            uint64 // frames sealed (packet numbers handed out)
	Opened            uint64 // frames opened
	Replays           uint64 // refused: packet number already opened
	TooOld            uint64 // refused: behind the replay window
	AuthFailures      uint64 // refused: the AEAD did not authenticate them
}

// TableStats is a table's sessions and its sealers' refusal counters.
type TableStats struct {
	Sessions   []SessionStats // by local id
	Refused    [NumReasons]uint64
	Handshakes uint64 // completed by this table's Listeners and Dials
	Refusals   uint64 // handshakes its Listeners refused or failed
}

// Stats reads the table's counters at now (for key ages). It allocates
// and takes the table's lock; it is for `zerohop stat` and scrapes, not
// the data path.
func (t *Table) Stats(now time.Time) TableStats {
	var st TableStats
	nowNs := now.UnixNano()
	for i := 1; i < len(t.slots); i++ {
		s := t.slots[i].Load()
		if s == nil {
			continue
		}
		w := s.send.word.Load()
		ss := SessionStats{
			LocalID: s.localID, RemoteID: s.remoteID, Role: s.role, Peer: s.peerStr, PeerAddr: s.peerAddr,
			Suite: s.suite, Established: s.created, Expires: s.expires,
			SendKeyUpdates: s.sendRotated.Load(), RecvKeyUpdates: s.recvRotated.Load(),
			Sealed: w & pnMask, Opened: s.opened.Load(), Replays: s.replays.Load(), TooOld: s.tooOld.Load(),
			AuthFailures: s.authFailures.Load(),
		}
		if k := s.send.keys[uint8(w>>56)&3].Load(); k != nil {
			ss.SendKeyAge = time.Duration(nowNs - k.born)
		}
		if k := s.recv.cur.Load(); k != nil {
			ss.RecvKeyAge = time.Duration(nowNs - k.born.Load())
		}
		st.Sessions = append(st.Sessions, ss)
	}
	sort.Slice(st.Sessions, func(i, j int) bool { return st.Sessions[i].LocalID < st.Sessions[j].LocalID })
	if p := t.sealers.Load(); p != nil {
		for _, s := range *p {
			for r := range st.Refused {
				st.Refused[r] += s.drops[r].Load()
			}
		}
	}
	st.Handshakes, st.Refusals = t.handshakes.Load(), t.refused.Load()
	return st
}

// Format writes st as the text `zerohop stat` prints: one line per
// session, then the refusals by reason (only those that happened).
func (st TableStats) Format(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "SESSION\tROLE\tPEER\tADDR\tSUITE\tKEY AGE\tUPDATES\tSEALED\tOPENED\tREPLAYS\tTOO OLD\tAUTH FAIL\tEXPIRES IN\n")
	now := time.Now()
	for _, s := range st.Sessions {
		age := s.SendKeyAge
		if s.RecvKeyAge > age {
			age = s.RecvKeyAge
		}
		fmt.Fprintf(tw, "%08x\t%s\t%s\t%s\t%s\t%s\t%d/%d\t%d\t%d\t%d\t%d\t%d\t%s\n",
			s.LocalID, s.Role, s.Peer, s.PeerAddr, s.Suite, age.Truncate(time.Second),
			s.SendKeyUpdates, s.RecvKeyUpdates, s.Sealed, s.Opened, s.Replays, s.TooOld, s.AuthFailures,
			s.Expires.Sub(now).Truncate(time.Second))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "handshakes: %d completed, %d refused\n", st.Handshakes, st.Refusals)
	for r := Reason(1); r < NumReasons; r++ {
		if n := st.Refused[r]; n > 0 {
			if _, err := fmt.Fprintf(w, "refused %s: %d (%s)\n", r.String(), n, r.Error()); err != nil {
				return err
			}
		}
	}
	return nil
}
