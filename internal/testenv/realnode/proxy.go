package realnode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// ensureProxy starts the host's kube-proxy, once, as the first node's: one
// per host, since every node of a host shares its iptables. It waits until
// kube-proxy has written the Service rules, so that a pod started next
// reaches the kubernetes Service.
func (h *Host) ensureProxy(ctx context.Context, cluster JoinConfig, nodeName, bin string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proxy != nil {
		return nil
	}
	dir, err := os.MkdirTemp("", "srn-proxy-")
	if err != nil {
		return err
	}
	if err := h.lease.record(func(r *resources) { r.Dirs = append(r.Dirs, dir) }); err != nil {
		return err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// system:kube-proxy is bound to system:node-proxier by the API
	// server's bootstrap policy.
	if err := cluster.CA.writeClientKubeconfig(kubeconfig, cluster.Server, "system:kube-proxy"); err != nil {
		return err
	}
	config, err := renderProxyConfig(kubeconfig, nodeName)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.yaml"), config, 0o644); err != nil {
		return err
	}
	proxy, err := startComponent(h.lease, h, "kube-proxy", filepath.Join(dir, "kube-proxy.log"), os.Environ(), bin,
		"--config="+filepath.Join(dir, "config.yaml"), "--v=2")
	if err != nil {
		return err
	}
	h.proxy = proxy
	return h.waitProxy(ctx)
}

// renderProxyConfig is kube-proxy's configuration: iptables mode, serving
// on the host's loopback, and conntrack left alone (its limits are the
// machine's, shared with everything else).
func renderProxyConfig(kubeconfig, nodeName string) ([]byte, error) {
	return yaml.Marshal(map[string]any{
		"apiVersion":         "kubeproxy.config.k8s.io/v1alpha1",
		"kind":               "KubeProxyConfiguration",
		"mode":               "iptables",
		"hostnameOverride":   nodeName,
		"clientConnection":   map[string]any{"kubeconfig": kubeconfig},
		"metricsBindAddress": "127.0.0.1:10249",
		"healthzBindAddress": "127.0.0.1:10256",
		"conntrack": map[string]any{
			"maxPerCore":            0,
			"min":                   0,
			"tcpEstablishedTimeout": "0s",
			"tcpCloseWaitTimeout":   "0s",
		},
	})
}

// waitProxy waits until kube-proxy's NAT table holds the kubernetes
// Service, or kube-proxy exits.
func (h *Host) waitProxy(ctx context.Context) error {
	var last string
	for {
		if err := h.proxy.failure(); err != nil {
			return err
		}
		out, err := h.command("iptables", "-w", "-t", "nat", "-S", "KUBE-SERVICES").CombinedOutput()
		last = strings.TrimSpace(string(out))
		if err == nil && strings.Contains(last, "default/kubernetes:https") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-proxy of host %s wrote no rule for the kubernetes Service: %w (iptables -t nat -S KUBE-SERVICES: %s)\n%s", h.Name, ctx.Err(), last, h.proxy.logTail())
		case <-time.After(pollInterval):
		}
	}
}
