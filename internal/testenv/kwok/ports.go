package kwok

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// portSet holds the ports of one cluster, all on 127.0.0.1.
type portSet struct {
	etcd, etcdPeer, apiserver, controllerManager, scheduler, kwok int
	// metricsServer is 0 without Options.MetricsServer.
	metricsServer int
}

// reservePorts picks the six ports of a cluster, seven with metrics-server.
// A port is ours while we hold an flock on <tmp>/stretch-kwok-ports/<port>:
// other test processes skip it, and the kernel releases it if we die.
func reservePorts(metricsServer bool) (portSet, []*os.File, error) {
	want := 6
	if metricsServer {
		want = 7
	}
	dir := filepath.Join(os.TempDir(), "stretch-kwok-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		return portSet{}, nil, err
	}
	var ports []int
	var locks []*os.File
	release := func() {
		for _, f := range locks {
			_ = f.Close()
		}
	}
	span := portMax - portMin
	var n [2]byte
	_, _ = rand.Read(n[:])
	first := int(n[0])<<8 | int(n[1])
	for i := 0; i < span && len(ports) < want; i++ {
		port := portMin + (first+i)%span
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			release()
			return portSet{}, nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil || !portFree(port) {
			_ = f.Close()
			continue
		}
		ports = append(ports, port)
		locks = append(locks, f)
	}
	if len(ports) < want {
		release()
		return portSet{}, nil, fmt.Errorf("no %d free ports in %d-%d", want, portMin, portMax)
	}
	set := portSet{etcd: ports[0], etcdPeer: ports[1], apiserver: ports[2], controllerManager: ports[3], scheduler: ports[4], kwok: ports[5]}
	if metricsServer {
		set.metricsServer = ports[6]
	}
	return set, locks, nil
}

func portFree(port int) bool {
	for _, host := range []string{loopback, ""} {
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false
		}
		_ = l.Close()
	}
	return true
}
