package filewatch

import (
	"os"
	"syscall"
)

// fileStamp identifies a version of a file without reading it.
type fileStamp struct {
	size, mtimeNs, ctimeNs int64
	dev, ino               uint64
}

func stamp(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	s := fileStamp{size: fi.Size(), mtimeNs: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.dev, s.ino = uint64(st.Dev), st.Ino
		s.ctimeNs = st.Ctim.Nano()
	}
	return s, nil
}
