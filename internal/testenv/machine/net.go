package machine

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// Test servers listen on ports of PortMin-PortMax, below the kernel's
// ephemeral range (32768-60999 by default): a port picked there stays free
// until its server binds it, where one the kernel handed out (listening on
// port 0, then closing) may meanwhile become the source port of any
// connection, or another process's pick, and the server then fails to
// bind, or a client reaches another server (it happened in CI).
const (
	PortMin = 20000
	PortMax = 32000
)

// portLockDir holds one lock file per reserved port.
var portLockDir = filepath.Join(os.TempDir(), "stretch-kwok-ports")

// ReservePorts picks n free ports of PortMin-PortMax on 127.0.0.1 and all
// interfaces. A port is ours while we hold an flock on its file in
// portLockDir: other test processes skip it, and the kernel releases it if
// we die. Closing the files releases them.
func ReservePorts(n int) ([]int, []*os.File, error) {
	if err := os.MkdirAll(portLockDir, 0o777); err != nil {
		return nil, nil, err
	}
	var ports []int
	var locks []*os.File
	release := func() {
		for _, f := range locks {
			_ = f.Close()
		}
	}
	span := PortMax - PortMin
	var r [2]byte
	_, _ = rand.Read(r[:])
	first := int(r[0])<<8 | int(r[1])
	for i := 0; i < span && len(ports) < n; i++ {
		port := PortMin + (first+i)%span
		f, err := os.OpenFile(filepath.Join(portLockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			release()
			return nil, nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !portFree(port) {
			_ = f.Close()
			continue
		}
		ports = append(ports, port)
		locks = append(locks, f)
	}
	if len(ports) < n {
		release()
		return nil, nil, fmt.Errorf("no %d free ports in %d-%d", n, PortMin, PortMax)
	}
	return ports, locks, nil
}

func portFree(port int) bool {
	for _, host := range []string{"127.0.0.1", ""} {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}

// heldPorts are the locks of the ports FreeAddr handed out: held until the
// process ends, since a caller binds its port at a time FreeAddr cannot
// know (a handful per test process).
var heldPorts struct {
	sync.Mutex
	locks []*os.File
}

// FreeAddr returns a 127.0.0.1 address whose port is reserved for this
// process (see ReservePorts), for servers that take an address rather than
// report the port they got.
func FreeAddr() (string, error) {
	ports, locks, err := ReservePorts(1)
	if err != nil {
		return "", err
	}
	heldPorts.Lock()
	heldPorts.locks = append(heldPorts.locks, locks...)
	heldPorts.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])), nil
}
