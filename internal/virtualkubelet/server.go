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
	"github.com/gorilla/mux"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/utils/ptr"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
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

// How long a stream (exec, attach, port-forward) may stay idle, and how
// long its client has to open its streams, as the kubelet's defaults.
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = 30 * time.Second
)

// serve runs the kubelet API (container logs, exec, attach, port-forward,
// stats and resource metrics) of every virtual node on e until ctx is done
// (docs/design.md §4.24). Only clients with a certificate of the home
// cluster's client CA (the API server presents one) or a token the home API
// server authenticates (metrics-server presents its ServiceAccount's) are
// served, and only what they may do on the node, as the kubelet authorizes.
// A certificate is asked for, not required, so that a client without one
// gets a 401 as from a kubelet without anonymous access rather than a failed
// handshake; one that is given is verified, and an untrusted one still
// fails the handshake.
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
	pods := vkapi.PodHandler(vkapi.PodHandlerConfig{
		GetContainerLogs:      s.containerLogs,
		RunInContainer:        s.execInContainer,
		AttachToContainer:     s.attachToContainer,
		GetStatsSummary:       s.statsSummary,
		GetMetricsResource:    s.metricsResource,
		StreamIdleTimeout:     streamIdleTimeout,
		StreamCreationTimeout: streamCreationTimeout,
	}, false)
	// The library's own port-forward route swaps the idle and creation
	// timeouts (an idle forward would close after 30 s): this one comes
	// first, with them in their places.
	router := mux.NewRouter()
	router.HandleFunc(peeringv1alpha1.VirtualNodeMetricsPath("{node}"), s.nodeMetricsResource).Methods(http.MethodGet)
	router.Handle("/portForward/{namespace}/{pod}", vkapi.HandlePortForward(s.portForward,
		vkapi.WithPortForwardStreamIdleTimeout(streamIdleTimeout),
		vkapi.WithPortForwardCreationTimeout(streamCreationTimeout),
	)).Methods(http.MethodPost, http.MethodGet)
	router.NotFoundHandler = pods
	srv := &http.Server{
		Addr:              e.BindAddress,
		Handler:           s.authorize(router, log),
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

// authorize lets a request through when its client may do what it asks on
// the node it is about, with the resource and verb the kubelet checks:
// nodes/stats and nodes/metrics (get) for /stats and /metrics, nodes/proxy
// for the rest (get for logs and the pod list, create for exec, attach and
// port-forward, which the kubelet would let a WebSocket client do with get).
func (s *Set) authorize(next http.Handler, log logr.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, groups, ok := s.authenticate(w, r, log)
		if !ok {
			return
		}
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		verb, subresource := "create", "proxy"
		var nodes []string
		switch {
		case len(parts) == 5 && r.URL.Path == peeringv1alpha1.VirtualNodeMetricsPath(parts[2]):
			// One node's metrics: the right on that node.
			if !slices.Contains(s.nodeNames(), parts[2]) {
				http.Error(w, fmt.Sprintf("node %s is not a virtual node of this manager", parts[2]), http.StatusNotFound)
				return
			}
			verb, subresource, nodes = "get", "metrics", []string{parts[2]}
		case parts[0] == "stats" || parts[0] == "metrics":
			// One endpoint serves every virtual node of this manager, and
			// a request does not say which node it is for: its answer
			// covers them all, so the client needs the right on each.
			verb, subresource, nodes = "get", parts[0], s.nodeNames()
		case parts[0] == "pods":
			verb, nodes = "get", s.nodeNames()
		default:
			if len(parts) < 3 {
				http.NotFound(w, r)
				return
			}
			k := s.kubeletOf(parts[1], parts[2])
			if k == nil {
				http.Error(w, fmt.Sprintf("pod %s/%s does not run on a virtual node of this manager", parts[1], parts[2]), http.StatusNotFound)
				return
			}
			nodes = []string{k.NodeName}
			if r.Method == http.MethodGet && parts[0] == "containerLogs" {
				verb = "get"
			}
		}
		if len(nodes) == 0 {
			// No virtual node runs here: ask about nodes in general.
			nodes = []string{""}
		}
		for _, node := range nodes {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: user, Groups: groups,
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "nodes", Subresource: subresource, Name: node},
			}}
			res, err := s.Home.AuthorizationV1().SubjectAccessReviews().Create(r.Context(), sar, metav1.CreateOptions{})
			if err != nil {
				log.Error(err, "authorizing a kubelet API request", "user", user)
				http.Error(w, fmt.Sprintf("authorizing user %q to %s nodes/%s of node %s: the SubjectAccessReview failed: %v; retry once the API server answers",
					user, verb, subresource, node, err), http.StatusInternalServerError)
				return
			}
			if !res.Status.Allowed {
				http.Error(w, fmt.Sprintf("user %q may not %s nodes/%s of node %s (%s): grant it that verb on nodes/%s with a ClusterRole and ClusterRoleBinding, as system:kubelet-api-admin grants the API server's kubelet client",
					user, verb, subresource, node, reason(res.Status), subresource), http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// authenticate returns the user of a request, as the kubelet's
// authenticator finds it: the verified client certificate's subject, or
// the user the home API server reviews a bearer token as. It answers 401
// itself, and then returns false.
func (s *Set) authenticate(w http.ResponseWriter, r *http.Request, log logr.Logger) (string, []string, bool) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cert := r.TLS.PeerCertificates[0]
		// As the kubelet's authenticator does, a verified certificate's
		// user is also in system:authenticated.
		return cert.Subject.CommonName, append(slices.Clone(cert.Subject.Organization), "system:authenticated"), true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || strings.TrimSpace(token) == "" {
		http.Error(w, fmt.Sprintf("the kubelet API of virtual nodes serves only clients with a certificate of the cluster's client CA (%s in ConfigMap %s/%s) or a token the API server authenticates, and this request has neither: "+
			"reach it through the API server (kubectl logs, kubectl exec), which presents one",
			clientCAKey, authenticationConfigMapNamespace, authenticationConfigMapName), http.StatusUnauthorized)
		return "", nil, false
	}
	review, err := s.Home.AuthenticationV1().TokenReviews().Create(r.Context(), &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: strings.TrimSpace(token)},
	}, metav1.CreateOptions{})
	if err != nil {
		log.Error(err, "authenticating a kubelet API request")
		http.Error(w, fmt.Sprintf("authenticating the request's bearer token: the TokenReview failed: %v; retry once the API server answers", err), http.StatusInternalServerError)
		return "", nil, false
	}
	if !review.Status.Authenticated {
		msg := review.Status.Error
		if msg == "" {
			msg = "the API server does not know it"
		}
		http.Error(w, fmt.Sprintf("the request's bearer token is not valid (%s): present a current token of the home cluster, e.g. a ServiceAccount's", msg), http.StatusUnauthorized)
		return "", nil, false
	}
	return review.Status.User.Username, review.Status.User.Groups, true
}

// nodeNames returns the virtual nodes of this manager, sorted.
func (s *Set) nodeNames() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, r := range s.kubelets {
		out = append(out, r.kubelet.NodeName)
	}
	slices.Sort(out)
	return out
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
	return s.stream(ctx, ns, pod, "exec", &corev1.PodExecOptions{
		Container: container, Command: cmd, TTY: attach.TTY(),
		Stdin: attach.Stdin() != nil, Stdout: attach.Stdout() != nil, Stderr: attach.Stderr() != nil,
	}, attach)
}

// attachToContainer attaches to the remote container's main process,
// streaming its I/O (docs/design.md §4.24).
func (s *Set) attachToContainer(ctx context.Context, ns, pod, container string, attach vkapi.AttachIO) error {
	return s.stream(ctx, ns, pod, "attach", &corev1.PodAttachOptions{
		Container: container, TTY: attach.TTY(),
		Stdin: attach.Stdin() != nil, Stdout: attach.Stdout() != nil, Stderr: attach.Stderr() != nil,
	}, attach)
}

// stream runs subresource exec or attach of the remote pod with opts,
// streaming attach's I/O to it.
func (s *Set) stream(ctx context.Context, ns, pod, subresource string, opts runtime.Object, attach vkapi.AttachIO) error {
	k, twin, err := s.remoteOf(ns, pod)
	if err != nil {
		return err
	}
	req := k.provider.CoreV1().RESTClient().Post().Resource("pods").Namespace(twin).Name(pod).SubResource(subresource).
		VersionedParams(opts, scheme.ParameterCodec)
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
	o := remotecommand.StreamOptions{Tty: attach.TTY()}
	if in := attach.Stdin(); in != nil {
		o.Stdin = in
	}
	if out := attach.Stdout(); out != nil {
		o.Stdout = out
	}
	if e := attach.Stderr(); e != nil && !attach.TTY() {
		o.Stderr = e
	}
	if attach.TTY() {
		o.TerminalSizeQueue = sizeQueue(attach.Resize())
	}
	err = exec.StreamWithContext(ctx, o)
	k.countError(subresource, err)
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
