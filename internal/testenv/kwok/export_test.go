package kwok

// Components are the component processes of every cluster.
func Components() []string { return append([]string(nil), components...) }

// Root is the working directory of c, removed by Stop.
func (c *Cluster) Root() string { return c.root }

// Ports are the six ports reserved for c, seven with metrics-server.
func (c *Cluster) Ports() []int {
	p := c.ports
	ports := []int{p.etcd, p.etcdPeer, p.apiserver, p.controllerManager, p.scheduler, p.kwok}
	if p.metricsServer != 0 {
		ports = append(ports, p.metricsServer)
	}
	return ports
}
