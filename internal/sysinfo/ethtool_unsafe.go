package sysinfo

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelEthtool asks the kernel through SIOCETHTOOL on a datagram socket,
// which answers for the calling thread's network namespace.
type kernelEthtool struct{}

// ethtoolChannels is struct ethtool_channels of linux/ethtool.h.
type ethtoolChannels struct {
	cmd                                         uint32
	maxRX, maxTX, maxOther, maxCombined         uint32
	rxCount, txCount, otherCount, combinedCount uint32
}

// ifreqData is struct ifreq with its union holding a pointer (ifr_data).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

func ethtoolIoctl(iface string, data unsafe.Pointer) error {
	if len(iface) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", iface)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	ifr := &ifreqData{data: data}
	copy(ifr.name[:], iface)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(ifr)))
	runtime.KeepAlive(ifr)
	if errno != 0 {
		return errno
	}
	return nil
}

func (kernelEthtool) Channels(iface string) (Channels, error) {
	ch := &ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	if err := ethtoolIoctl(iface, unsafe.Pointer(ch)); err != nil {
		return Channels{}, fmt.Errorf("ETHTOOL_GCHANNELS on %s: %w", iface, err)
	}
	return Channels{RX: ch.rxCount, TX: ch.txCount, Other: ch.otherCount, Combined: ch.combinedCount}, nil
}

func (kernelEthtool) DriverInfo(iface string) (string, string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", "", fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, iface)
	if err != nil {
		return "", "", fmt.Errorf("ETHTOOL_GDRVINFO on %s: %w", iface, err)
	}
	return unix.ByteSliceToString(info.Driver[:]), unix.ByteSliceToString(info.Bus_info[:]), nil
}
