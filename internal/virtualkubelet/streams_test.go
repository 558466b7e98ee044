package virtualkubelet_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
	"stretch.dev/stretch/internal/webhook/certs"
)

// providerKubelet runs, on 127.0.0.1, the kubelet API of a node of provider
// eu as the provider's API server reaches it: port-forward dials the port
// asked for on 127.0.0.1 (the "pod's" network), attach answers each line
// of stdin in capitals. It registers the node and returns its name.
func providerKubelet(t *testing.T, g *WithT) string {
	t.Helper()
	handler := vkapi.PodHandler(vkapi.PodHandlerConfig{
		PortForward: func(ctx context.Context, _, _ string, port int32, stream io.ReadWriteCloser) error {
			conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))))
			if err != nil {
				return err
			}
			defer conn.Close()
			go func() {
				_, _ = io.Copy(conn, stream)
				_ = conn.(*net.TCPConn).CloseWrite()
			}()
			_, err = io.Copy(stream, conn)
			return err
		},
		AttachToContainer: func(_ context.Context, _, _, _ string, attach vkapi.AttachIO) error {
			lines := bufio.NewScanner(attach.Stdin())
			for lines.Scan() {
				if _, err := fmt.Fprintln(attach.Stdout(), strings.ToUpper(lines.Text())); err != nil {
					return err
				}
			}
			return lines.Err()
		},
	}, false)
	cert, err := certs.Ephemeral([]string{"127.0.0.1"}, time.Hour)
	g.Expect(err).NotTo(HaveOccurred())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	g.Expect(err).NotTo(HaveOccurred())
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "eu-worker"}}
	g.Expect(eu.Client.Create(ctx, node)).To(Succeed())
	t.Cleanup(func() { _ = eu.Client.Delete(ctx, node) })
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(ln.Addr().(*net.TCPAddr).Port)
	g.Expect(eu.Client.Status().Update(ctx, node)).To(Succeed())
	return node.Name
}

// echoServer is a TCP server on 127.0.0.1 that answers each line with
// "echo: LINE"; it returns its port.
func echoServer(t *testing.T, g *WithT) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				lines := bufio.NewScanner(conn)
				for lines.Scan() {
					if _, err := fmt.Fprintf(conn, "echo: %s\n", lines.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// kubeletConfig reaches the kubelet API of virtual nodes at addr as the API
// server does, with a client certificate of a home user in system:masters.
func kubeletConfig(t *testing.T, addr string) *rest.Config {
	t.Helper()
	user, err := home.AddUser("kubelet-client", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	return &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{
		Insecure: true, CertData: user.CertData, KeyData: user.KeyData,
	}}
}

// The kubelet API of virtual nodes forwards ports and attaches to
// containers of offloaded pods through the provider's API server, and
// serves their resource usage from the provider's metrics API
// (docs/design.md §4.24).
func TestKubeletAPIStreamsAndStats(t *testing.T) {
	parent := t
	g := newG(t)
	addr := testenv.FreeAddr(t)
	fleet.RunWith(t, home, homeID, []fleet.Provider{{Server: eu}}, fleet.Options{KubeletBindAddress: addr})
	ns := "kubelet-streams"
	twin := offload(t, g, ns)
	pod := boundPod(ns, "web")
	pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", nil
	g.Expect(home.Client.Create(ctx, pod)).To(Succeed())
	var remote *corev1.Pod
	g.Eventually(func(g Gomega) { remote = remotePod(g, twin, "web") }).Should(Succeed())

	// The provider's scheduler, as it were: the remote pod runs on a node
	// whose kubelet the provider's API server reaches.
	nodeName := providerKubelet(t, g)
	cs, err := kubernetes.NewForConfig(eu.Config)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(cs.CoreV1().Pods(twin).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: remote.Name, UID: remote.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: nodeName},
	}, metav1.CreateOptions{})).To(Succeed())
	cfg := kubeletConfig(t, addr)

	t.Run("port-forward reaches a TCP server the remote pod listens on, one stream per connection", func(t *testing.T) {
		g := newG(t)
		port := echoServer(t, g)
		local := forwardPort(t, g, cfg, addr, "/portForward/"+ns+"/web", port)
		for i := range 3 {
			conn, err := net.Dial("tcp", local)
			g.Expect(err).NotTo(HaveOccurred())
			_, err = fmt.Fprintf(conn, "hello %d\n", i)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(conn.SetReadDeadline(time.Now().Add(30 * time.Second))).To(Succeed())
			line, err := bufio.NewReader(conn).ReadString('\n')
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(line).To(Equal(fmt.Sprintf("echo: hello %d\n", i)))
			g.Expect(conn.Close()).To(Succeed())
		}
	})

	t.Run("port-forward to a port nobody listens on answers the remote cause on the error stream", func(t *testing.T) {
		g := newG(t)
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		g.Expect(err).NotTo(HaveOccurred())
		port := closed.Addr().(*net.TCPAddr).Port
		g.Expect(closed.Close()).To(Succeed())
		msg := portForwardError(g, cfg, addr, "/portForward/"+ns+"/web", port)
		g.Expect(msg).To(And(ContainSubstring("connection refused"), ContainSubstring(strconv.Itoa(port)), ContainSubstring(twin+"/web"), ContainSubstring("provider "+eu.Name)))
	})

	t.Run("attach streams stdin to the remote container and its output back", func(t *testing.T) {
		g := newG(t)
		u := &url.URL{Scheme: "https", Host: addr, Path: "/attach/" + ns + "/web/app", RawQuery: "input=1&output=1&error=1"}
		exec, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, u)
		g.Expect(err).NotTo(HaveOccurred())
		var stdout, stderr testenv.SyncBuffer
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		g.Expect(exec.StreamWithContext(sctx, remotecommand.StreamOptions{
			Stdin: strings.NewReader("ping\npong\n"), Stdout: &stdout, Stderr: &stderr,
		})).To(Succeed(), stderr.String())
		g.Expect(stdout.String()).To(Equal("PING\nPONG\n"))
	})

	kubelet := kubeletAPI(addr, clientCert(t, "kubelet-client-stats"))
	t.Run("without a metrics API at the provider: served, with scrape_error 1 and no pod", func(t *testing.T) {
		g := newG(t)
		a, err := kubelet(http.MethodGet, "/metrics/resource")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(a.code).To(Equal(http.StatusForbidden), "the user has no rights yet: %s", a.body)
		g.Expect(a.body).To(ContainSubstring(`may not get nodes/metrics of node ` + peeringv1alpha1.VirtualNodeName(eu.Name)))
		grant(parent, g, "User", "kubelet-client-stats")
		g.Eventually(func(g Gomega) {
			a, err := kubelet(http.MethodGet, "/metrics/resource")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(a.code).To(Equal(http.StatusOK), a.body)
			families := parseMetrics(g, a.body)
			g.Expect(families).To(HaveKey("scrape_error"))
			g.Expect(families["scrape_error"].GetMetric()[0].GetGauge().GetValue()).To(BeEquivalentTo(1))
			g.Expect(families).NotTo(HaveKey("container_cpu_usage_seconds_total"))
		}).Should(Succeed())
	})

	podMetricsCRD(t, g)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second)
	setPodMetrics(g, twin, "web", t0, 30*time.Second, "250m", "10Mi")
	t.Run("/metrics/resource: a cumulative CPU counter from the provider's rates, with their times", func(t *testing.T) {
		g := newG(t)
		sample := func(g Gomega) (map[string]float64, int64) {
			a, err := kubelet(http.MethodGet, "/metrics/resource")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(a.code).To(Equal(http.StatusOK), a.body)
			fam := parseMetrics(g, a.body)
			out := map[string]float64{}
			var at int64
			for _, name := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "node_cpu_usage_seconds_total", "node_memory_working_set_bytes", "scrape_error"} {
				g.Expect(fam).To(HaveKey(name))
				for _, m := range fam[name].GetMetric() {
					if strings.HasPrefix(name, "container_") {
						labels := map[string]string{}
						for _, l := range m.GetLabel() {
							labels[l.GetName()] = l.GetValue()
						}
						g.Expect(labels).To(Equal(map[string]string{"container": "app", "namespace": ns, "pod": "web"}))
						at = m.GetTimestampMs()
					}
					out[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
			return out, at
		}
		var first map[string]float64
		var at int64
		g.Eventually(func(g Gomega) { first, at = sample(g) }).Should(Succeed())
		// The first counter is what 250m used over the provider's window.
		g.Expect(first["container_cpu_usage_seconds_total"]).To(BeNumerically("~", 0.25*30, 1e-6))
		g.Expect(first["container_memory_working_set_bytes"]).To(BeEquivalentTo(10 << 20))
		g.Expect(at).To(Equal(t0.UnixMilli()))
		g.Expect(first["scrape_error"]).To(BeZero())
		g.Expect(first["node_memory_working_set_bytes"]).To(BeEquivalentTo(10 << 20))
		g.Expect(first["node_cpu_usage_seconds_total"]).To(BeNumerically(">", 0))

		// A scrape without a new sample at the provider: the same point.
		again, _ := sample(g)
		g.Expect(again["container_cpu_usage_seconds_total"]).To(Equal(first["container_cpu_usage_seconds_total"]))

		// The provider's next sample, 15 s later at 500m: metrics-server's
		// rate between the two points is the provider's rate.
		setPodMetrics(g, twin, "web", t0.Add(15*time.Second), 30*time.Second, "500m", "12Mi")
		var next map[string]float64
		var nextAt int64
		g.Eventually(func(g Gomega) {
			next, nextAt = sample(g)
			g.Expect(nextAt).To(Equal(t0.Add(15 * time.Second).UnixMilli()))
		}).Should(Succeed())
		rate := (next["container_cpu_usage_seconds_total"] - first["container_cpu_usage_seconds_total"]) / (float64(nextAt-at) / 1000)
		g.Expect(rate).To(BeNumerically("~", 0.5, 1e-6))
		g.Expect(next["container_memory_working_set_bytes"]).To(BeEquivalentTo(12 << 20))
		g.Expect(next["node_cpu_usage_seconds_total"]).To(BeNumerically(">=", first["node_cpu_usage_seconds_total"]))
	})

	t.Run("/stats/summary: the node, the pod and its container", func(t *testing.T) {
		g := newG(t)
		a, err := kubelet(http.MethodGet, "/stats/summary")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(a.code).To(Equal(http.StatusOK), a.body)
		var sum statsv1alpha1.Summary
		g.Expect(json.Unmarshal([]byte(a.body), &sum)).To(Succeed())
		g.Expect(sum.Node.NodeName).To(Equal(peeringv1alpha1.VirtualNodeName(eu.Name)))
		g.Expect(*sum.Node.Memory.WorkingSetBytes).To(BeEquivalentTo(12 << 20))
		g.Expect(sum.Pods).To(HaveLen(1))
		p := sum.Pods[0]
		g.Expect(p.PodRef).To(Equal(statsv1alpha1.PodReference{Name: "web", Namespace: ns, UID: string(pod.UID)}))
		g.Expect(p.Containers).To(HaveLen(1))
		c := p.Containers[0]
		g.Expect(c.Name).To(Equal("app"))
		g.Expect(*c.CPU.UsageNanoCores).To(BeEquivalentTo(500_000_000))
		g.Expect(*c.CPU.UsageCoreNanoSeconds).To(BeEquivalentTo(uint64(0.25*30e9 + 0.5*15e9)))
		g.Expect(*c.Memory.WorkingSetBytes).To(BeEquivalentTo(12 << 20))
		g.Expect(c.CPU.Time.Time).To(BeTemporally("==", t0.Add(15*time.Second)))
	})

	t.Run("each virtual node's own metrics path, which its annotation names: its pods once, with node figures", func(t *testing.T) {
		g := newG(t)
		node := peeringv1alpha1.VirtualNodeName(eu.Name)
		path := peeringv1alpha1.VirtualNodeMetricsPath(node)
		g.Expect(path).To(Equal("/metrics/nodes/" + node + "/metrics/resource"))
		g.Eventually(func(g Gomega) map[string]string {
			n := &corev1.Node{}
			g.Expect(home.Client.Get(ctx, client.ObjectKey{Name: node}, n)).To(Succeed())
			return n.Annotations
		}).Should(HaveKeyWithValue(wellknown.ResourceMetricsPathAnnotation, path))
		a, err := kubelet(http.MethodGet, path)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(a.code).To(Equal(http.StatusOK), a.body)
		fam := parseMetrics(g, a.body)
		g.Expect(fam["container_cpu_usage_seconds_total"].GetMetric()).To(HaveLen(1))
		g.Expect(fam["container_memory_working_set_bytes"].GetMetric()[0].GetGauge().GetValue()).To(BeEquivalentTo(12 << 20))
		g.Expect(fam["node_memory_working_set_bytes"].GetMetric()[0].GetGauge().GetValue()).To(BeEquivalentTo(12 << 20))
		other, err := kubelet(http.MethodGet, peeringv1alpha1.VirtualNodeMetricsPath("stretch-elsewhere"))
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(other.code).To(Equal(http.StatusNotFound), other.body)
		g.Expect(other.body).To(ContainSubstring("node stretch-elsewhere is not a virtual node of this manager"))
	})

	t.Run("a ServiceAccount token, as metrics-server presents it: reviewed by the home API server", func(t *testing.T) {
		g := newG(t)
		homeCS, err := kubernetes.NewForConfig(home.Config)
		g.Expect(err).NotTo(HaveOccurred())
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "metrics-server"}}
		g.Expect(home.Client.Create(ctx, sa)).To(Succeed())
		tr, err := homeCS.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		g.Expect(err).NotTo(HaveOccurred())
		withToken := func(token string) answer {
			req, err := http.NewRequest(http.MethodGet, "https://"+addr+"/metrics/resource", nil)
			g.Expect(err).NotTo(HaveOccurred())
			req.Header.Set("Authorization", "Bearer "+token)
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 10 * time.Second} //nolint:gosec // as metrics-server --kubelet-insecure-tls
			resp, err := c.Do(req)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			g.Expect(err).NotTo(HaveOccurred())
			return answer{resp.StatusCode, string(b)}
		}
		a := withToken("not-a-token")
		g.Expect(a.code).To(Equal(http.StatusUnauthorized), a.body)
		g.Expect(a.body).To(ContainSubstring("bearer token is not valid"))
		a = withToken(tr.Status.Token)
		g.Expect(a.code).To(Equal(http.StatusForbidden), a.body)
		g.Expect(a.body).To(ContainSubstring(`"system:serviceaccount:` + ns + `:metrics-server" may not get nodes/metrics`))
		grant(t, g, "ServiceAccount", ns+"/metrics-server")
		g.Eventually(func() int { return withToken(tr.Status.Token).code }).Should(Equal(http.StatusOK))
		g.Expect(withToken(tr.Status.Token).body).To(ContainSubstring(`container_cpu_usage_seconds_total{container="app",namespace="` + ns + `",pod="web"}`))
	})
}

// portForwardError opens one stream pair to port of the pod at path of the
// kubelet API at addr, as kubectl does for a connection, and returns what
// comes back on the error stream.
func portForwardError(g *WithT, cfg *rest.Config, addr, path string, port int) string {
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, &url.URL{Scheme: "https", Host: addr, Path: path})
	conn, _, err := dialer.Dial(portforward.PortForwardProtocolV1Name)
	g.Expect(err).NotTo(HaveOccurred())
	defer conn.Close()
	headers := http.Header{}
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	headers.Set(corev1.PortHeader, strconv.Itoa(port))
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	errorStream, err := conn.CreateStream(headers)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(errorStream.Close()).To(Succeed())
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	dataStream, err := conn.CreateStream(headers)
	g.Expect(err).NotTo(HaveOccurred())
	defer dataStream.Close()
	msg, err := io.ReadAll(errorStream)
	g.Expect(err).NotTo(HaveOccurred())
	return string(msg)
}

// forwardPort forwards a free local port to port of the pod at path of the
// kubelet API at addr, as the API server would for 'kubectl port-forward',
// and returns the local address.
func forwardPort(t *testing.T, g *WithT, cfg *rest.Config, addr, path string, port int) string {
	t.Helper()
	transport, upgrader, err := spdy.RoundTripperFor(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, &url.URL{Scheme: "https", Host: addr, Path: path})
	pfctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(pfctx, dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, ready, io.Discard, io.Discard)
	g.Expect(err).NotTo(HaveOccurred())
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port-forward to %s ended before it was ready: %v", path, err)
	}
	ports, err := pf.GetPorts()
	g.Expect(err).NotTo(HaveOccurred())
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].Local)))
}

// grant lets a home subject ("User" name or "ServiceAccount" ns/name) get
// nodes/metrics and nodes/stats, as metrics-server's ClusterRole does.
func grant(t *testing.T, g *WithT, kind, name string) {
	t.Helper()
	subject := rbacv1.Subject{APIGroup: rbacv1.GroupName, Kind: kind, Name: name}
	if kind == rbacv1.ServiceAccountKind {
		ns, n, _ := strings.Cut(name, "/")
		subject = rbacv1.Subject{Kind: kind, Namespace: ns, Name: n}
	}
	roleName := "kubelet-stats-" + strings.ReplaceAll(name, "/", "-")
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: roleName},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes/metrics", "nodes/stats"}, Verbs: []string{"get"}}}}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: roleName},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{subject}}
	g.Expect(home.Client.Create(ctx, role)).To(Succeed())
	g.Expect(home.Client.Create(ctx, binding)).To(Succeed())
	t.Cleanup(func() {
		_ = home.Client.Delete(ctx, binding)
		_ = home.Client.Delete(ctx, role)
	})
}

// parseMetrics parses the Prometheus text format as metrics-server's
// scraper reads it.
func parseMetrics(g Gomega, body string) map[string]*dto.MetricFamily {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	g.Expect(err).NotTo(HaveOccurred(), body)
	return families
}

// podMetricsCRD serves metrics.k8s.io/v1beta1 PodMetrics from provider eu
// as a custom resource of the same shape: what its metrics-server would
// serve, without a metrics-server.
func podMetricsCRD(t *testing.T, g *WithT) {
	t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "pods.metrics.k8s.io", Annotations: map[string]string{
			// A *.k8s.io group needs it; a test stands in for the real API.
			"api-approved.kubernetes.io": "unapproved, a test stand-in for metrics-server",
		}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "metrics.k8s.io",
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "pods", Singular: "podmetrics", Kind: "PodMetrics", ListKind: "PodMetricsList"},
			Scope: apiextensionsv1.NamespaceScoped,
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
				Name: "v1beta1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true),
				}},
			}},
		},
	}
	g.Expect(eu.Client.Create(ctx, crd)).To(Succeed())
	t.Cleanup(func() { _ = eu.Client.Delete(ctx, crd) })
	g.Eventually(func(g Gomega) {
		g.Expect(eu.Client.Get(ctx, client.ObjectKeyFromObject(crd), crd)).To(Succeed())
		established := false
		for _, c := range crd.Status.Conditions {
			established = established || (c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue)
		}
		g.Expect(established).To(BeTrue())
	}).Should(Succeed())
}

// setPodMetrics writes the PodMetrics of pod ns/name on provider eu, one
// container app, as the provider's metrics-server reports it.
func setPodMetrics(g *WithT, ns, name string, at time.Time, window time.Duration, cpu, memory string) {
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
		"metadata":  map[string]any{"namespace": ns, "name": name},
		"timestamp": at.UTC().Format(time.RFC3339),
		"window":    window.String(),
		"containers": []any{map[string]any{"name": "app", "usage": map[string]any{
			"cpu": cpu, "memory": memory,
		}}},
	}}
	g.Eventually(func() error {
		cur := &unstructured.Unstructured{}
		cur.SetGroupVersionKind(obj.GroupVersionKind())
		err := eu.Client.Get(ctx, client.ObjectKeyFromObject(obj), cur)
		if err == nil {
			obj.SetResourceVersion(cur.GetResourceVersion())
			return eu.Client.Update(ctx, obj)
		}
		if client.IgnoreNotFound(err) != nil {
			return err
		}
		return eu.Client.Create(ctx, obj)
	}).Should(Succeed())
}
