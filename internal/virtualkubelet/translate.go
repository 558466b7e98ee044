package virtualkubelet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/peering"
	"stretch.dev/stretch/internal/placement"
)

// What the virtual kubelet writes into the token Secrets of a twin (their
// labels and annotations are named in api/wellknown).
const (
	// Keys of a token Secret, named as in a kube-api-access volume.
	TokenKey     = "token"
	CACertKey    = "ca.crt"
	NamespaceKey = "namespace"

	// rootCAConfigMap is the ConfigMap every namespace has with the CA of its
	// own cluster; the provider's is not the home's.
	rootCAConfigMap = "kube-root-ca.crt"
)

// tokenRef is a service account token an offloaded pod mounts: which
// account, for which audience (empty: the API server's default).
type tokenRef struct {
	ServiceAccount string
	Audience       string
}

// secretName is the twin Secret that carries the token.
func (t tokenRef) secretName() string {
	if t.Audience == "" {
		return wellknown.TokenSecretPrefix + t.ServiceAccount
	}
	sum := sha256.Sum256([]byte(t.Audience))
	return wellknown.TokenSecretPrefix + t.ServiceAccount + "-" + hex.EncodeToString(sum[:4])
}

// originLabels are the labels of everything the virtual kubelet creates in a
// twin namespace.
func originLabels(homeClusterID, homeNamespace string) map[string]string {
	return map[string]string{
		wellknown.ReflectedLabel:       "true",
		wellknown.OriginClusterIDLabel: homeClusterID,
		wellknown.OriginNamespaceLabel: homeNamespace,
	}
}

// reflected reports whether obj, found in a twin namespace, was created by
// the virtual kubelet of homeClusterID. The origin labels alone do not say
// it of an EndpointSlice: the provider's EndpointSlice controller copies
// the labels of a twin's Service, those among them, onto the slices it
// derives from the remote pods, and taking those for copies would delete
// them as fast as it makes them (docs/design.md §4.22).
func reflected(obj client.Object, homeClusterID string) bool {
	l := obj.GetLabels()
	key, value := kindMark(obj)
	return l[wellknown.ReflectedLabel] == "true" && l[wellknown.OriginClusterIDLabel] == homeClusterID && (key == "" || l[key] == value)
}

// oursSelector is the labels of the objects of obj's kind that the virtual
// kubelet of homeClusterID created in a twin (see reflected); the sweep
// lists with it.
func oursSelector(obj runtime.Object, homeClusterID string) client.MatchingLabels {
	ours := client.MatchingLabels{wellknown.ReflectedLabel: "true", wellknown.OriginClusterIDLabel: homeClusterID}
	if key, value := kindMark(obj); key != "" {
		ours[key] = value
	}
	return ours
}

// kindMark is the label, beside the origin labels, that marks the objects
// of obj's kind as Stretch's in a twin; none for most kinds.
func kindMark(obj runtime.Object) (key, value string) {
	if _, ok := obj.(*discoveryv1.EndpointSlice); ok {
		return discoveryv1.LabelManagedBy, wellknown.EndpointSliceManager
	}
	return "", ""
}

// remoteMeta is the metadata of the copy of a home object in a twin: same
// name, the home labels and annotations plus the origin labels; no owner,
// no finalizer.
func remoteMeta(home metav1.Object, twin, homeClusterID string) metav1.ObjectMeta {
	labels := maps.Clone(home.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, originLabels(homeClusterID, home.GetNamespace()))
	annotations := maps.Clone(home.GetAnnotations())
	delete(annotations, corev1.LastAppliedConfigAnnotation)
	return metav1.ObjectMeta{Name: home.GetName(), Namespace: twin, Labels: labels, Annotations: annotations}
}

// RemotePod returns the pod to create in the twin namespace for a home pod
// bound to a virtual node. What only means something at home goes:
//   - the binding (nodeName) and the scheduling constraints that chose the
//     virtual node (node selector, node affinity, the virtual-node toleration,
//     runtimeClassName stretch), since the provider's scheduler places the pod
//     among its own nodes;
//   - priority, preemption policy and overhead, which the provider's
//     admission computes from its own classes and rejects when they
//     disagree (the priority class name stays: the provider's policy says
//     which classes a home cluster may name, and refuses the others);
//   - the home service account: the remote pod runs as the twin's default
//     account without an automounted token, and the home token it mounts
//     (a projected serviceAccountToken volume) comes from a Secret the virtual
//     kubelet keeps in the twin; with it, the home CA and namespace.
//
// References to the pod's namespace (downward API) keep meaning the home
// namespace. With api known, its containers reach the home API server, not
// the provider's (see apiServerEnv). Its annotations list the label and
// annotation keys it is given (see wellknown.RemotePodManagedLabelsAnnotation).
func RemotePod(home *corev1.Pod, twin, homeClusterID string, api HomeAPIServer) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: remoteMeta(home, twin, homeClusterID), Spec: *home.Spec.DeepCopy()}
	metav1.SetMetaDataAnnotation(&p.ObjectMeta, wellknown.OriginPodUIDAnnotation, string(home.UID))
	setManagedKeys(&p.ObjectMeta)

	s := &p.Spec
	s.NodeName = ""
	s.NodeSelector = nil
	if s.Affinity != nil {
		s.Affinity.NodeAffinity = nil
		if s.Affinity.PodAffinity == nil && s.Affinity.PodAntiAffinity == nil {
			s.Affinity = nil
		}
	}
	s.Tolerations = slices.DeleteFunc(s.Tolerations, func(t corev1.Toleration) bool {
		return t.Key == placement.VirtualNodeToleration.Key
	})
	if len(s.Tolerations) == 0 {
		s.Tolerations = nil
	}
	if placement.ForcesRemote(s) {
		s.RuntimeClassName = nil
	}
	s.Priority, s.PreemptionPolicy, s.Overhead = nil, nil, nil
	s.SchedulerName = ""
	s.EphemeralContainers = nil // added through a subresource, never at creation

	serviceAccount := s.ServiceAccountName
	s.ServiceAccountName, s.DeprecatedServiceAccount = "", ""
	s.AutomountServiceAccountToken = ptr.To(false)
	for i := range s.Volumes {
		if s.Volumes[i].Projected != nil {
			translateProjection(s.Volumes[i].Projected, serviceAccount)
		}
	}
	for _, cs := range [][]corev1.Container{s.InitContainers, s.Containers} {
		for i := range cs {
			homeNamespaceEnv(cs[i].Env, home.Namespace)
			cs[i].Env = apiServerEnv(cs[i].Env, api)
		}
	}
	return p
}

// setManagedKeys lists in m's annotations the label and annotation keys m
// has, as the keys Stretch set (see updateRemoteMeta).
func setManagedKeys(m *metav1.ObjectMeta) {
	labels, annotations := keyList(m.Labels), keyList(m.Annotations)
	metav1.SetMetaDataAnnotation(m, wellknown.RemotePodManagedLabelsAnnotation, labels)
	metav1.SetMetaDataAnnotation(m, wellknown.RemotePodManagedAnnotationsAnnotation, annotations)
}

// keyList is the sorted keys of m, comma-separated (label and annotation
// keys have no comma).
func keyList(m map[string]string) string {
	return strings.Join(slices.Sorted(maps.Keys(m)), ",")
}

// managedKeys returns the keys listed in annotation of a remote pod's
// annotations. A remote pod created by a release that did not list them
// has not the annotation: the keys of want, what the home pod gives now,
// stand for them (a key removed at home before the upgrade stays).
func managedKeys(annotations map[string]string, annotation string, want map[string]string) []string {
	v, ok := annotations[annotation]
	if !ok {
		return slices.Collect(maps.Keys(want))
	}
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

// syncKeys returns cur with the keys of want set and the keys of managed
// that want no longer has removed; other keys, the provider's, stay.
func syncKeys(cur, want map[string]string, managed []string) map[string]string {
	for _, k := range managed {
		if _, ok := want[k]; !ok {
			delete(cur, k)
		}
	}
	if len(want) > 0 && cur == nil {
		cur = make(map[string]string, len(want))
	}
	maps.Copy(cur, want)
	return cur
}

// updateRemoteMeta makes the labels and annotations of remote pod (or
// reflected object) cur those of want, what its home object gives now, as
// far as Stretch set them: keys of want are set, keys Stretch set before
// and want no longer has (a label removed at home, to take the pod out of
// a Service) are removed, and keys the provider added (a CNI's, an
// admission webhook's, a load balancer controller's) stay. The lists of
// keys Stretch set are updated with them.
func updateRemoteMeta(cur *metav1.ObjectMeta, want metav1.ObjectMeta) {
	labels := managedKeys(cur.Annotations, wellknown.RemotePodManagedLabelsAnnotation, want.Labels)
	annotations := managedKeys(cur.Annotations, wellknown.RemotePodManagedAnnotationsAnnotation, want.Annotations)
	cur.Labels = syncKeys(cur.Labels, want.Labels, labels)
	cur.Annotations = syncKeys(cur.Annotations, want.Annotations, annotations)
}

// HomeAPIServer is where offloaded pods reach the home API server: the host
// and port of the manager's --api-server-url. The zero value means unknown.
type HomeAPIServer struct {
	Host, Port string
}

// ParseHomeAPIServer returns the host and port of apiServerURL,
// https://HOST[:PORT] (port 443 when it has none); "" gives the zero
// HomeAPIServer.
func ParseHomeAPIServer(apiServerURL string) (HomeAPIServer, error) {
	if apiServerURL == "" {
		return HomeAPIServer{}, nil
	}
	checked, err := peering.ParseAPIServerURL(apiServerURL)
	if err != nil {
		return HomeAPIServer{}, fmt.Errorf("--api-server-url: %w", err)
	}
	u, err := url.Parse(checked)
	if err != nil {
		return HomeAPIServer{}, fmt.Errorf("--api-server-url: %w", err)
	}
	api := HomeAPIServer{Host: u.Hostname(), Port: u.Port()}
	if api.Port == "" {
		api.Port = "443"
	}
	return api, nil
}

// apiServerEnv returns env with the variables rest.InClusterConfig reads set
// to the home API server. The provider's kubelet sets them to its own API
// server, which refuses the home token the pod mounts; a container's
// explicit env wins over them. They come first, so that the container's own
// $(KUBERNETES_SERVICE_HOST) references expand to the home values; a name
// the container sets itself keeps its value.
func apiServerEnv(env []corev1.EnvVar, api HomeAPIServer) []corev1.EnvVar {
	if api.Host == "" {
		return env
	}
	var add []corev1.EnvVar
	for _, v := range []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: api.Host},
		{Name: "KUBERNETES_SERVICE_PORT", Value: api.Port},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: api.Port},
	} {
		if !slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == v.Name }) {
			add = append(add, v)
		}
	}
	if len(add) == 0 {
		return env
	}
	return append(add, env...)
}

// tokensOf returns the service account tokens that pod mounts through
// projected volumes.
func tokensOf(pod *corev1.Pod) []tokenRef {
	var refs []tokenRef
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken == nil {
				continue
			}
			ref := tokenRef{ServiceAccount: serviceAccountOf(pod.Spec.ServiceAccountName), Audience: src.ServiceAccountToken.Audience}
			if !slices.Contains(refs, ref) {
				refs = append(refs, ref)
			}
		}
	}
	return refs
}

func serviceAccountOf(name string) string {
	if name == "" {
		return "default"
	}
	return name
}

// translateProjection makes a projected volume read the home token, and
// with it the home CA and namespace, from the token Secret of the twin.
// Projections without a token keep their sources, but for the namespace.
func translateProjection(v *corev1.ProjectedVolumeSource, serviceAccount string) {
	var token *tokenRef
	for _, src := range v.Sources {
		if src.ServiceAccountToken != nil {
			token = &tokenRef{ServiceAccount: serviceAccountOf(serviceAccount), Audience: src.ServiceAccountToken.Audience}
			break
		}
	}
	sources := make([]corev1.VolumeProjection, 0, len(v.Sources))
	for _, src := range v.Sources {
		switch {
		case src.ServiceAccountToken != nil:
			sources = append(sources, secretProjection(token.secretName(), corev1.KeyToPath{Key: TokenKey, Path: src.ServiceAccountToken.Path}))
		case token != nil && src.ConfigMap != nil && src.ConfigMap.Name == rootCAConfigMap:
			items := make([]corev1.KeyToPath, 0, len(src.ConfigMap.Items))
			for _, it := range src.ConfigMap.Items {
				items = append(items, corev1.KeyToPath{Key: CACertKey, Path: it.Path, Mode: it.Mode})
			}
			if len(items) == 0 {
				items = append(items, corev1.KeyToPath{Key: CACertKey, Path: CACertKey})
			}
			sources = append(sources, secretProjection(token.secretName(), items...))
		case src.DownwardAPI != nil:
			sources = append(sources, namespaceFromSecret(src.DownwardAPI, token)...)
		default:
			sources = append(sources, src)
		}
	}
	v.Sources = sources
}

// namespaceFromSecret splits a downward API projection: items that read
// metadata.namespace would give the twin's name, so, in a volume that has a
// token Secret, they read the home namespace from it.
func namespaceFromSecret(d *corev1.DownwardAPIProjection, token *tokenRef) []corev1.VolumeProjection {
	if token == nil {
		return []corev1.VolumeProjection{{DownwardAPI: d}}
	}
	var ns []corev1.KeyToPath
	var kept []corev1.DownwardAPIVolumeFile
	for _, it := range d.Items {
		if it.FieldRef != nil && it.FieldRef.FieldPath == "metadata.namespace" {
			ns = append(ns, corev1.KeyToPath{Key: NamespaceKey, Path: it.Path, Mode: it.Mode})
			continue
		}
		kept = append(kept, it)
	}
	var out []corev1.VolumeProjection
	if len(kept) > 0 {
		out = append(out, corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: kept}})
	}
	if len(ns) > 0 {
		out = append(out, secretProjection(token.secretName(), ns...))
	}
	return out
}

func secretProjection(name string, items ...corev1.KeyToPath) corev1.VolumeProjection {
	return corev1.VolumeProjection{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Items: items}}
}

// homeNamespaceEnv turns variables set from metadata.namespace into the home
// namespace's name.
func homeNamespaceEnv(env []corev1.EnvVar, homeNamespace string) {
	for i := range env {
		if f := env[i].ValueFrom; f != nil && f.FieldRef != nil && f.FieldRef.FieldPath == "metadata.namespace" {
			env[i].Value, env[i].ValueFrom = homeNamespace, nil
		}
	}
}

// HomeView returns the home pod with the status of its remote pod: what the
// virtual kubelet reports at home. The home pod's identity and spec stay;
// the remote pod being deleted is not reported, since the home pod is what
// decides (a remote pod deleted behind our back is recreated).
func HomeView(home, remote *corev1.Pod) *corev1.Pod {
	view := home.DeepCopy()
	st := remote.Status.DeepCopy()
	// The remote scheduler's conditions hold; the home scheduler's
	// PodScheduled (the binding to the virtual node) stays true.
	st.Conditions = slices.DeleteFunc(st.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodScheduled })
	if i := slices.IndexFunc(home.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodScheduled }); i >= 0 {
		st.Conditions = append([]corev1.PodCondition{home.Status.Conditions[i]}, st.Conditions...)
	}
	st.NominatedNodeName = ""
	view.Status = *st
	return view
}
