package proto

import (
	"encoding/binary"
	"errors"
	"io"
)

// Stream splits a byte stream (the TCP fallback) into frames sent back to
// back, whatever the read boundaries. It buffers at most one incomplete
// frame, in a buffer the caller provides once; a frame longer than that
// buffer is ErrFrameTooLarge, never an allocation.
//
// Use it with chunks that some reader filled (an io_uring provided buffer,
// a read(2)):
//
//	s.Feed(chunk)
//	for {
//		f, err := s.Next()
//		if f == nil && err == nil {
//			break // chunk consumed: it may be reused now
//		}
//		…
//	}
//
// A Frame from Next aliases the chunk (when the whole frame lies in it, the
// common case: no copy) or the Stream's buffer (when it straddled chunks).
// It stays valid until the next call of Next or Feed, and the chunk must not
// change until Next has returned (nil, nil).
//
// Errors from Next: class ErrBadFrame errors come with the header view and
// the stream goes on, exactly as after Parse. ErrMagic and ErrVersion mean
// the stream lost frame sync, and ErrFrameTooLarge that a frame cannot be
// held (it comes with the header view, so the caller may answer TOO_LARGE);
// these three are sticky: every later Next returns the same error, and the
// connection should be closed. Make a Stream with NewStream; it is not safe
// for concurrent use.
type Stream struct {
	buf      []byte // holds the incomplete frame in buf[:buffered]
	pending  int    // total size of the frame in buf, once its header is in; else 0
	in       []byte // the unconsumed rest of the last chunk fed
	buffered int
	err      error  // sticky
	last     []byte // the whole frame the last Next returned, for Raw
}

// ErrStreamBusy: Feed was called before Next consumed the previous chunk.
var ErrStreamBusy = errors.New("proto: stream: previous chunk not consumed")

// NewStream returns a Stream that accepts frames of up to len(buf) bytes
// (HeaderLen at least; MaxFrameLen accepts every frame) and keeps partial
// frames in buf.
func NewStream(buf []byte) *Stream {
	s := &Stream{buf: buf}
	if len(buf) < HeaderLen {
		s.err = ErrBufferTooSmall
	}
	return s
}

// Feed hands the Stream the next chunk of the byte stream.
func (s *Stream) Feed(chunk []byte) error {
	if len(s.in) > 0 {
		return ErrStreamBusy
	}
	s.in = chunk
	return nil
}

// Buffered returns how many bytes of an incomplete frame the Stream holds;
// a stream that ends while it is not 0 ended inside a frame.
func (s *Stream) Buffered() int { return s.buffered }

// Next returns the next complete frame, or (nil, nil) when it needs the next
// chunk; by then it has consumed the whole chunk.
func (s *Stream) Next() (Frame, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.buffered == 0 {
		// Fast path: the frame lies in the chunk.
		if len(s.in) >= HeaderLen {
			size, err := s.frameSize(s.in)
			if err != nil {
				return s.fail(s.in, err)
			}
			if len(s.in) >= size {
				f := s.in[:size:size]
				s.in = s.in[size:]
				s.last = f
				return Parse(f)
			}
			s.pending = size
		}
		if len(s.in) == 0 {
			return nil, nil
		}
		s.buffered = copy(s.buf, s.in) // fits: len(s.in) < pending ≤ len(buf), or < HeaderLen
		s.in = nil
		return nil, nil
	}
	if s.pending == 0 {
		s.fill(HeaderLen)
		if s.buffered < HeaderLen {
			return nil, nil
		}
		size, err := s.frameSize(s.buf)
		if err != nil {
			return s.fail(s.buf, err)
		}
		s.pending = size
	}
	s.fill(s.pending)
	if s.buffered < s.pending {
		return nil, nil
	}
	f := s.buf[:s.pending:s.pending]
	s.buffered, s.pending = 0, 0
	s.last = f
	return Parse(f)
}

// Raw returns the whole frame the last Next returned, as received,
// whatever Parse made of it: where Next gives a sealed frame's header view
// (ErrSealed), the receiver that holds its keys opens Raw in place. It is
// valid exactly as long as that frame, and nil before the first frame.
func (s *Stream) Raw() []byte { return s.last }

// fill moves input into buf until it holds want bytes or the chunk is used up.
func (s *Stream) fill(want int) {
	n := copy(s.buf[s.buffered:want], s.in)
	s.buffered += n
	s.in = s.in[n:]
}

// frameSize checks the header at the start of b (HeaderLen bytes at least)
// and returns the size of its frame.
func (s *Stream) frameSize(b []byte) (int, error) {
	if binary.BigEndian.Uint32(b[magicOffset:]) != Magic {
		return 0, ErrMagic
	}
	if b[versionOffset] != Version {
		return 0, ErrVersion
	}
	size := HeaderLen + int(binary.BigEndian.Uint16(b[lengthOffset:]))
	if size > len(s.buf) {
		return 0, ErrFrameTooLarge
	}
	return size, nil
}

func (s *Stream) fail(hdr []byte, err error) (Frame, error) {
	s.err = err
	s.in = nil
	if err == ErrFrameTooLarge {
		return Frame(hdr[:HeaderLen:HeaderLen]), err
	}
	return nil, err
}

// StreamReader reads frames from an io.Reader through a Stream, with two
// buffers given once: frameBuf bounds the frame size (see NewStream) and
// readBuf receives each Read. Frames are valid until the next call of Next.
type StreamReader struct {
	s       *Stream
	r       io.Reader
	readBuf []byte
	readErr error
}

// NewStreamReader returns a StreamReader over r.
func NewStreamReader(r io.Reader, frameBuf, readBuf []byte) *StreamReader {
	return &StreamReader{s: NewStream(frameBuf), r: r, readBuf: readBuf}
}

// maxEmptyReads bounds Reads that return neither data nor an error.
const maxEmptyReads = 100

// Next returns the next frame. At the end of the stream it returns io.EOF,
// or io.ErrUnexpectedEOF when the stream ended inside a frame; read errors
// are returned as they are. Parse errors are as for Stream.Next.
func (sr *StreamReader) Next() (Frame, error) {
	empty := 0
	for {
		f, err := sr.s.Next()
		if f != nil || err != nil {
			return f, err
		}
		if sr.readErr != nil {
			if sr.readErr == io.EOF && sr.s.Buffered() > 0 {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, sr.readErr
		}
		if len(sr.readBuf) == 0 {
			return nil, ErrBufferTooSmall
		}
		n, err := sr.r.Read(sr.readBuf)
		sr.readErr = err
		if n > 0 {
			empty = 0
			sr.s.Feed(sr.readBuf[:n]) // cannot fail: Next consumed the last chunk
			continue
		}
		if err == nil {
			empty++
			if empty >= maxEmptyReads {
				return nil, io.ErrNoProgress
			}
		}
	}
}
