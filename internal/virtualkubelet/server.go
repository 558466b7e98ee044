package virtualkubelet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"

	"stretch.dev/stretch/internal/webhook/certs"
)

// Where the API server finds the client CA it signs its kubelet client
// certificate with, as every aggregated API server reads it.
const (
	authenticationConfigMapNamespace = "kube-system"
	authenticationConfigMapName      = "extension-apiserver-authentication"
	clientCAKey                      = "client-ca-file"
)

// KubeletEndpoint is where the API server reaches the kubelet API of every
// virtual node: the node's InternalIP and kubelet port.
type KubeletEndpoint struct {
	// BindAddress is the host:port the API is served on.
	BindAddress string
	// Address is the address virtual nodes advertise; empty means the host
	// of BindAddress.
	Address string
}

// Advertised returns the address and port virtual nodes advertise.
func (e KubeletEndpoint) Advertised() (string, int32, error) {
	host, port, err := net.SplitHostPort(e.BindAddress)
	if err != nil {
		return "", 0, fmt.Errorf("--kubelet-bind-address %q is not host:port: %w", e.BindAddress, err)
	}
	var p int
	if _, err := fmt.Sscan(port, &p); err != nil || p <= 0 || p > 65535 {
		return "", 0, fmt.Errorf("--kubelet-bind-address %q: the port must be a number from 1 to 65535", e.BindAddress)
	}
	addr := e.Address
	if addr == "" {
		addr = host
	}
	if ip := net.ParseIP(addr); ip == nil || ip.IsUnspecified() {
		return "", 0, fmt.Errorf("--kubelet-address %q is not an IP the API server can reach: set it to this manager's address (e.g. its pod IP)", addr)
	}
	return addr, int32(p), nil
}

// serve runs the kubelet API (container logs, exec) of every virtual node on
// e until ctx is done. Only clients with a certificate of the home cluster's
// client CA are served (the API server presents one), and only what they may
// do on the node (nodes/proxy, as the kubelet authorizes). A certificate is
// asked for, not required, so that a client without one gets a 401 as from a
// kubelet without anonymous access rather than a failed handshake; one that
// is given is verified, and an untrusted one still fails the handshake.
func (s *Set) serve(ctx context.Context, e KubeletEndpoint, log logr.Logger) error {
	addr, _, err := e.Advertised()
	if err != nil {
		return err
	}
	cm, err := s.Home.CoreV1().ConfigMaps(authenticationConfigMapNamespace).Get(ctx, authenticationConfigMapName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the API server's client CA from ConfigMap %s/%s: %w", authenticationConfigMapNamespace, authenticationConfigMapName, err)
	}
	clientCAs := x509.NewCertPool()
	if !clientCAs.AppendCertsFromPEM([]byte(cm.Data[clientCAKey])) {
		return fmt.Errorf("ConfigMap %s/%s has no client CA in %s: the kubelet API of virtual nodes cannot authenticate the API server", authenticationConfigMapNamespace, authenticationConfigMapName, clientCAKey)
	}
	serving, err := certs.Ephemeral([]string{addr}, 365*24*time.Hour)
	if err != nil {
		return err
	}
	handler := vkapi.PodHandler(vkapi.PodHandlerConfig{
		GetContainerLogs:      s.containerLogs,
		RunInContainer:        s.execInContainer,
		StreamIdleTimeout:     4 * time.Hour,
		StreamCreationTimeout: 30 * time.Second,
	}, false)
	srv := &http.Server{
		Addr:              e.BindAddress,
		Handler:           s.authorize(handler, log),
		ReadHeaderTimeout: 30 * time.Second,
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{serving},
			ClientAuth:   tls.VerifyClientCertIfGiven,
			ClientCAs:    clientCAs,
		},
		ErrorLog: nil,
	}
	ln, err := net.Listen("tcp", e.BindAddress)
	if err != nil {
		return fmt.Errorf("serving the kubelet API of virtual nodes on %s: %w", e.BindAddress, err)
	}
	log.Info("serving the kubelet API of virtual nodes", "address", e.BindAddress)
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// authorize lets a request through when its client may reach the node of
// the pod it is about: nodes/proxy, get for reads, create for streams.
func (s *Set) authorize(next http.Handler, log logr.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, fmt.Sprintf("the kubelet API of virtual nodes serves only clients with a certificate of the cluster's client CA (%s in ConfigMap %s/%s), and this request has none: "+
				"reach it through the API server (kubectl logs, kubectl exec), which presents one",
				clientCAKey, authenticationConfigMapNamespace, authenticationConfigMapName), http.StatusUnauthorized)
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) < 3 {
			http.NotFound(w, r)
			return
		}
		k := s.kubeletOf(parts[1], parts[2])
		if k == nil {
			http.Error(w, fmt.Sprintf("pod %s/%s does not run on a virtual node of this manager", parts[1], parts[2]), http.StatusNotFound)
			return
		}
		cert := r.TLS.PeerCertificates[0]
		verb := "create"
		if r.Method == http.MethodGet && parts[0] == "containerLogs" {
			verb = "get"
		}
		// As the kubelet's authenticator does, a verified certificate's user
		// is also in system:authenticated.
		groups := append(slices.Clone(cert.Subject.Organization), "system:authenticated")
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User: cert.Subject.CommonName, Groups: groups,
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "nodes", Subresource: "proxy", Name: k.NodeName},
		}}
		res, err := s.Home.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), sar, metav1.CreateOptions{})
		if err != nil {
			log.Error(err, "authorizing a kubelet API request", "user", cert.Subject.CommonName)
			http.Error(w, fmt.Sprintf("authorizing user %q to %s nodes/proxy of node %s: the SubjectAccessReview failed: %v; retry once the API server answers",
				cert.Subject.CommonName, verb, k.NodeName, err), http.StatusInternalServerError)
			return
		}
		if !res.Status.Allowed {
			http.Error(w, fmt.Sprintf("user %q may not %s nodes/proxy of node %s (%s): grant it that verb on nodes/proxy with a ClusterRole and ClusterRoleBinding, as system:kubelet-api-admin grants the API server's kubelet client",
				cert.Subject.CommonName, verb, k.NodeName, reason(res.Status)), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// reason is why a SubjectAccessReview was not allowed, as the API server says
// it.
func reason(s authorizationv1.SubjectAccessReviewStatus) string {
	switch {
	case s.Reason != "":
		return s.Reason
	case s.EvaluationError != "":
		return s.EvaluationError
	}
	return "no rule allows it"
}

// kubeletOf returns the kubelet running home pod ns/name.
func (s *Set) kubeletOf(ns, name string) *Kubelet {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.kubelets {
		k := r.kubelet
		if p, err := k.homePods.Pods(ns).Get(name); err == nil && p.Spec.NodeName == k.NodeName {
			return k
		}
	}
	return nil
}

// remoteOf returns the kubelet of home pod ns/name and its twin namespace.
func (s *Set) remoteOf(ns, name string) (*Kubelet, string, error) {
	k := s.kubeletOf(ns, name)
	if k == nil {
		return nil, "", errdefs.NotFoundf("pod %s/%s does not run on a virtual node", ns, name)
	}
	t := k.twins.get(ns)
	if t == nil {
		return nil, "", errdefs.NotFoundf("pod %s/%s is not running: provider %s has no ready twin of namespace %s", ns, name, k.ProviderName, ns)
	}
	return k, t.name, nil
}

// containerLogs streams the logs of the remote container.
func (s *Set) containerLogs(ctx context.Context, ns, pod, container string, o vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	k, twin, err := s.remoteOf(ns, pod)
	if err != nil {
		return nil, err
	}
	opts := &corev1.PodLogOptions{Container: container, Follow: o.Follow, Previous: o.Previous, Timestamps: o.Timestamps}
	if o.Tail > 0 {
		opts.TailLines = ptr.To(int64(o.Tail))
	}
	if o.LimitBytes > 0 {
		opts.LimitBytes = ptr.To(int64(o.LimitBytes))
	}
	if o.SinceSeconds > 0 {
		opts.SinceSeconds = ptr.To(int64(o.SinceSeconds))
	}
	if !o.SinceTime.IsZero() {
		opts.SinceTime = &metav1.Time{Time: o.SinceTime}
	}
	stream, err := k.provider.CoreV1().Pods(twin).GetLogs(pod, opts).Stream(ctx)
	k.countError("logs", err)
	if err != nil {
		return nil, fmt.Errorf("logs of pod %s/%s on provider %s: %w", twin, pod, k.ProviderName, err)
	}
	return stream, nil
}

// execInContainer runs cmd in the remote container, streaming its I/O.
func (s *Set) execInContainer(ctx context.Context, ns, pod, container string, cmd []string, attach vkapi.AttachIO) error {
	k, twin, err := s.remoteOf(ns, pod)
	if err != nil {
		return err
	}
	req := k.provider.CoreV1().RESTClient().Post().Resource("pods").Namespace(twin).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container, Command: cmd, TTY: attach.TTY(),
			Stdin: attach.Stdin() != nil, Stdout: attach.Stdout() != nil, Stderr: attach.Stderr() != nil,
		}, scheme.ParameterCodec)
	cfg := k.Peer.Config()
	spdy, err := remotecommand.NewSPDYExecutor(cfg, http.MethodPost, req.URL())
	if err != nil {
		return err
	}
	ws, err := remotecommand.NewWebSocketExecutor(cfg, http.MethodGet, req.URL().String())
	if err != nil {
		return err
	}
	// SPDY only when the provider refused the WebSocket upgrade: any later
	// error (a non-zero exit among them) means the command ran, and must
	// not run twice.
	exec, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	opts := remotecommand.StreamOptions{Tty: attach.TTY()}
	if in := attach.Stdin(); in != nil {
		opts.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		opts.Stdout = out
	}
	if e := attach.Stderr(); e != nil && !attach.TTY() {
		opts.Stderr = e
	}
	if attach.TTY() {
		opts.TerminalSizeQueue = sizeQueue(attach.Resize())
	}
	err = exec.StreamWithContext(ctx, opts)
	k.countError("exec", err)
	return err
}

// sizeQueue passes terminal resizes on to the remote container.
type sizeQueue <-chan vkapi.TermSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	size, ok := <-q
	if !ok {
		return nil
	}
	return &remotecommand.TerminalSize{Width: size.Width, Height: size.Height}
}
