package kwok

import (
	"os"

	"stretch.dev/stretch/internal/testenv/machine"
)

// portSet holds the ports of one cluster, all on 127.0.0.1.
type portSet struct {
	etcd, etcdPeer, apiserver, controllerManager, scheduler, kwok int
	// metricsServer is 0 without Options.MetricsServer.
	metricsServer int
}

// reservePorts picks the six ports of a cluster, seven with metrics-server
// (see machine.ReservePorts).
func reservePorts(metricsServer bool) (portSet, []*os.File, error) {
	want := 6
	if metricsServer {
		want = 7
	}
	ports, locks, err := machine.ReservePorts(want)
	if err != nil {
		return portSet{}, nil, err
	}
	set := portSet{etcd: ports[0], etcdPeer: ports[1], apiserver: ports[2], controllerManager: ports[3], scheduler: ports[4], kwok: ports[5]}
	if metricsServer {
		set.metricsServer = ports[6]
	}
	return set, locks, nil
}
