package virtualkubelet

import (
	"maps"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/placement"
)

const homeID = "7b0c6f0e-5b8c-4c53-9a57-2a1b1f0c9d11"

// apiAccess is the volume the ServiceAccount admission plugin adds.
func apiAccess() corev1.Volume {
	return corev1.Volume{Name: "kube-api-access-x", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o644),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}}
}

func homePod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "shop", UID: "uid-1",
			Labels:          map[string]string{"app": "web"},
			Annotations:     map[string]string{"note": "x", corev1.LastAppliedConfigAnnotation: "{}"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web", UID: "rs"}},
			Finalizers:      []string{"example.com/hold"},
		},
		Spec: corev1.PodSpec{
			NodeName:           "stretch-eu",
			NodeSelector:       map[string]string{"region": "eu"},
			ServiceAccountName: "builder",
			Priority:           ptr.To[int32](1000),
			PriorityClassName:  "high",
			PreemptionPolicy:   ptr.To(corev1.PreemptNever),
			SchedulerName:      "default-scheduler",
			RuntimeClassName:   ptr.To(wellknown.RuntimeClassName),
			Overhead:           corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m")},
			Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "stretch.dev/type", Operator: corev1.NodeSelectorOpIn, Values: []string{"virtual-node"}}}}}}}},
			Tolerations: []corev1.Toleration{placement.VirtualNodeToleration, {Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}},
			Containers: []corev1.Container{{Name: "app", Image: "nginx", Env: []corev1.EnvVar{
				{Name: "NS", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				{Name: "CFG", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}},
			}}},
			Volumes: []corev1.Volume{apiAccess(), {Name: "data", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}},
		},
	}
}

func TestRemotePod(t *testing.T) {
	g := NewWithT(t)
	home := homePod()
	before := home.DeepCopy()
	r := RemotePod(home, "shop-"+homeID, homeID, HomeAPIServer{})

	g.Expect(home).To(Equal(before), "the home pod is not modified")
	g.Expect(r.Name).To(Equal("web-1"))
	g.Expect(r.Namespace).To(Equal("shop-" + homeID))
	g.Expect(r.Labels).To(Equal(map[string]string{"app": "web", wellknown.ReflectedLabel: "true",
		wellknown.OriginClusterIDLabel: homeID, wellknown.OriginNamespaceLabel: "shop"}))
	g.Expect(r.Annotations).To(Equal(map[string]string{"note": "x", wellknown.OriginPodUIDAnnotation: "uid-1",
		wellknown.RemotePodManagedLabelsAnnotation:      "app," + wellknown.OriginClusterIDLabel + "," + wellknown.OriginNamespaceLabel + "," + wellknown.ReflectedLabel,
		wellknown.RemotePodManagedAnnotationsAnnotation: "note," + wellknown.OriginPodUIDAnnotation,
	}))
	g.Expect(r.OwnerReferences).To(BeEmpty())
	g.Expect(r.Finalizers).To(BeEmpty())

	s := r.Spec
	g.Expect(s.NodeName).To(BeEmpty())
	g.Expect(s.NodeSelector).To(BeNil())
	g.Expect(s.Affinity).To(BeNil())
	g.Expect(s.Tolerations).To(ConsistOf(HaveField("Key", "node.kubernetes.io/not-ready")))
	g.Expect(s.RuntimeClassName).To(BeNil())
	g.Expect(s.Priority).To(BeNil())
	// The class name stays for the provider's policy to allow or refuse.
	g.Expect(s.PriorityClassName).To(Equal("high"))
	g.Expect(s.PreemptionPolicy).To(BeNil())
	g.Expect(s.Overhead).To(BeNil())
	g.Expect(s.SchedulerName).To(BeEmpty())
	g.Expect(s.ServiceAccountName).To(BeEmpty())
	g.Expect(s.AutomountServiceAccountToken).To(Equal(ptr.To(false)))

	g.Expect(s.Containers[0].Env).To(Equal([]corev1.EnvVar{
		{Name: "NS", Value: "shop"},
		{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: "CFG", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}, Key: "k"}}},
	}))
	secret := corev1.LocalObjectReference{Name: "stretch-token-builder"}
	g.Expect(s.Volumes[0].Projected.Sources).To(Equal([]corev1.VolumeProjection{
		{Secret: &corev1.SecretProjection{LocalObjectReference: secret, Items: []corev1.KeyToPath{{Key: TokenKey, Path: "token"}}}},
		{Secret: &corev1.SecretProjection{LocalObjectReference: secret, Items: []corev1.KeyToPath{{Key: CACertKey, Path: "ca.crt"}}}},
		{Secret: &corev1.SecretProjection{LocalObjectReference: secret, Items: []corev1.KeyToPath{{Key: NamespaceKey, Path: "namespace"}}}},
	}))
	g.Expect(s.Volumes[0].Projected.DefaultMode).To(Equal(ptr.To[int32](0o644)))
	g.Expect(s.Volumes[1]).To(Equal(before.Spec.Volumes[1]), "other volumes are kept")
	g.Expect(tokensOf(home)).To(Equal([]tokenRef{{ServiceAccount: "builder"}}))
}

func TestUpdateRemoteMeta(t *testing.T) {
	// The remote pod of a home pod with label app and annotation note, as
	// created: origin keys and the lists of the keys Stretch set.
	created := func() metav1.ObjectMeta {
		home := homePod()
		home.Annotations = map[string]string{"note": "x"}
		return RemotePod(home, "twin", homeID, HomeAPIServer{}).ObjectMeta
	}
	// want is the remote pod the home pod gives after change.
	want := func(change func(home *corev1.Pod)) metav1.ObjectMeta {
		home := homePod()
		home.Annotations = map[string]string{"note": "x"}
		change(home)
		return RemotePod(home, "twin", homeID, HomeAPIServer{}).ObjectMeta
	}
	origin := map[string]string{wellknown.ReflectedLabel: "true", wellknown.OriginClusterIDLabel: homeID, wellknown.OriginNamespaceLabel: "shop"}
	with := func(m map[string]string, kv ...string) map[string]string {
		out := maps.Clone(m)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	originLabelKeys := wellknown.OriginClusterIDLabel + "," + wellknown.OriginNamespaceLabel + "," + wellknown.ReflectedLabel
	tests := []struct {
		name string
		// provider changes the remote pod as created; home the home pod.
		provider func(*metav1.ObjectMeta)
		home     func(*corev1.Pod)
		labels   map[string]string
		// annotations are the remote pod's, but for the lists of keys.
		annotations        map[string]string
		managedL, managedA string
	}{{
		name:        "nothing changed",
		provider:    func(*metav1.ObjectMeta) {},
		home:        func(*corev1.Pod) {},
		labels:      with(origin, "app", "web"),
		annotations: map[string]string{"note": "x", wellknown.OriginPodUIDAnnotation: "uid-1"},
		managedL:    "app," + originLabelKeys, managedA: "note," + wellknown.OriginPodUIDAnnotation,
	}, {
		name: "keys removed at home go, the provider's stay",
		provider: func(m *metav1.ObjectMeta) {
			m.Labels["cni.example/net"] = "blue"
			m.Annotations["provider.example/seen"] = "yes"
		},
		home:        func(p *corev1.Pod) { p.Labels = map[string]string{"tier": "front"}; p.Annotations = nil },
		labels:      with(origin, "tier", "front", "cni.example/net", "blue"),
		annotations: map[string]string{wellknown.OriginPodUIDAnnotation: "uid-1", "provider.example/seen": "yes"},
		managedL:    originLabelKeys + ",tier", managedA: wellknown.OriginPodUIDAnnotation,
	}, {
		name:        "home's value wins over the provider's; a provider's key home takes up becomes Stretch's",
		provider:    func(m *metav1.ObjectMeta) { m.Labels["app"] = "theirs"; m.Labels["team"] = "a" },
		home:        func(p *corev1.Pod) { p.Labels["team"] = "b" },
		labels:      with(origin, "app", "web", "team", "b"),
		annotations: map[string]string{"note": "x", wellknown.OriginPodUIDAnnotation: "uid-1"},
		managedL:    "app," + originLabelKeys + ",team", managedA: "note," + wellknown.OriginPodUIDAnnotation,
	}, {
		// Created by an older release: no lists. What the home pod has now
		// counts as Stretch's; the rest, which may be the provider's, stays.
		name: "a remote pod without the lists gets them, and loses nothing",
		provider: func(m *metav1.ObjectMeta) {
			delete(m.Annotations, wellknown.RemotePodManagedLabelsAnnotation)
			delete(m.Annotations, wellknown.RemotePodManagedAnnotationsAnnotation)
			m.Labels["cni.example/net"] = "blue"
		},
		home:        func(p *corev1.Pod) { delete(p.Labels, "app") },
		labels:      with(origin, "app", "web", "cni.example/net", "blue"),
		annotations: map[string]string{"note": "x", wellknown.OriginPodUIDAnnotation: "uid-1"},
		managedL:    originLabelKeys, managedA: "note," + wellknown.OriginPodUIDAnnotation,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			cur := created()
			tt.provider(&cur)
			w := want(tt.home)
			before := w.DeepCopy()
			updateRemoteMeta(&cur, w)
			g.Expect(w).To(Equal(*before), "want is not modified")
			g.Expect(cur.Labels).To(Equal(tt.labels))
			g.Expect(cur.Annotations).To(Equal(with(tt.annotations, wellknown.RemotePodManagedLabelsAnnotation, tt.managedL, wellknown.RemotePodManagedAnnotationsAnnotation, tt.managedA)))
		})
	}

	t.Run("once tracked, a key removed at home goes", func(t *testing.T) {
		g := NewWithT(t)
		cur := created()
		delete(cur.Annotations, wellknown.RemotePodManagedLabelsAnnotation)
		updateRemoteMeta(&cur, want(func(*corev1.Pod) {}))
		updateRemoteMeta(&cur, want(func(p *corev1.Pod) { delete(p.Labels, "app") }))
		g.Expect(cur.Labels).To(Equal(origin))
	})
}

func TestRemotePodKeepsPodAffinityAndPlainProjections(t *testing.T) {
	g := NewWithT(t)
	home := homePod()
	home.Spec.ServiceAccountName = ""
	home.Spec.Affinity.PodAntiAffinity = &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{TopologyKey: "kubernetes.io/hostname"}}}
	plain := corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
		{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}},
		{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}}},
	}}}}
	home.Spec.Volumes = append(home.Spec.Volumes, plain)
	audience := apiAccess()
	audience.Name = "vault"
	audience.Projected.Sources = audience.Projected.Sources[:1]
	audience.Projected.Sources[0].ServiceAccountToken = &corev1.ServiceAccountTokenProjection{Audience: "vault", Path: "vault-token"}
	home.Spec.Volumes = append(home.Spec.Volumes, audience)

	r := RemotePod(home, "twin", homeID, HomeAPIServer{})
	g.Expect(r.Spec.Affinity).To(Equal(&corev1.Affinity{PodAntiAffinity: home.Spec.Affinity.PodAntiAffinity}))
	g.Expect(r.Spec.Volumes[2]).To(Equal(plain), "a projection without token is kept")
	g.Expect(r.Spec.Volumes[0].Projected.Sources[0].Secret.Name).To(Equal("stretch-token-default"))
	g.Expect(tokensOf(home)).To(Equal([]tokenRef{{ServiceAccount: "default"}, {ServiceAccount: "default", Audience: "vault"}}))
	vault := r.Spec.Volumes[3].Projected.Sources[0].Secret
	g.Expect(vault.Name).To(HavePrefix("stretch-token-default-"))
	g.Expect(vault.Name).NotTo(Equal("stretch-token-default"))
	g.Expect(vault.Items).To(Equal([]corev1.KeyToPath{{Key: TokenKey, Path: "vault-token"}}))
}

func TestHomeView(t *testing.T) {
	g := NewWithT(t)
	home := homePod()
	bound := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "bound-home"}
	home.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{bound}}
	remote := RemotePod(home, "twin", homeID, HomeAPIServer{})
	remote.UID = "remote-uid"
	now := metav1.Now()
	remote.DeletionTimestamp = &now
	remote.Status = corev1.PodStatus{
		Phase: corev1.PodRunning, PodIP: "10.1.2.3", PodIPs: []corev1.PodIP{{IP: "10.1.2.3"}}, HostIP: "192.168.0.9", StartTime: &now, NominatedNodeName: "n1",
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, Reason: "remote"},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue},
		},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Ready: true, RestartCount: 3, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
	}
	v := HomeView(home, remote)
	g.Expect(v.ObjectMeta).To(Equal(home.ObjectMeta), "the home pod's identity stays; the remote deletion is not reported")
	g.Expect(v.Spec).To(Equal(home.Spec))
	g.Expect(v.Status.Phase).To(Equal(corev1.PodRunning))
	g.Expect(v.Status.PodIP).To(Equal("10.1.2.3"))
	g.Expect(v.Status.ContainerStatuses[0].RestartCount).To(BeEquivalentTo(3))
	g.Expect(v.Status.Conditions).To(Equal([]corev1.PodCondition{bound, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}))
	g.Expect(v.Status.NominatedNodeName).To(BeEmpty())
}

func TestReflectedObject(t *testing.T) {
	tests := []struct {
		name      string
		home      client.Object
		reflected bool
	}{
		{"configmap", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}}, true},
		{"root CA", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "kube-root-ca.crt"}}, false},
		{"opaque secret", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Type: corev1.SecretTypeOpaque}, true},
		{"service account token", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "sa-token"}, Type: corev1.SecretTypeServiceAccountToken}, false},
		{"reserved name", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "stretch-token-x"}}, false},
		{"service", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(Reflected(tt.home)).To(Equal(tt.reflected))
		})
	}

	g := NewWithT(t)
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}}, Spec: corev1.ServiceSpec{
		Type: corev1.ServiceTypeNodePort, ClusterIP: "10.0.0.1", ClusterIPs: []string{"10.0.0.1"}, Selector: map[string]string{"app": "web"},
		Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 30080}},
	}}
	r := ReflectedObject(svc, "twin", homeID).(*corev1.Service)
	g.Expect(r.Namespace).To(Equal("twin"))
	g.Expect(r.Spec.ClusterIP).To(BeEmpty())
	g.Expect(r.Spec.ClusterIPs).To(BeNil())
	g.Expect(r.Spec.Ports[0].NodePort).To(BeZero())
	g.Expect(r.Spec.Selector).To(Equal(svc.Spec.Selector))
	g.Expect(r.Labels).To(HaveKeyWithValue(wellknown.ReflectedLabel, "true"))

	// What the provider allocated does not make the object out of sync.
	cur := r.DeepCopy()
	cur.Spec.ClusterIP, cur.Spec.ClusterIPs, cur.Spec.Ports[0].NodePort = "10.9.9.9", []string{"10.9.9.9"}, 31000
	cur.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	g.Expect(inSync(cur, r)).To(BeTrue())
	changed := r.DeepCopy()
	changed.Spec.Ports[0].Port = 81
	g.Expect(inSync(cur, changed)).To(BeFalse())

	headless := svc.DeepCopy()
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	g.Expect(ReflectedObject(headless, "twin", homeID).(*corev1.Service).Spec.ClusterIP).To(Equal(corev1.ClusterIPNone))
}

// TestReflectedInTwin: what the virtual kubelet counts as its own in a twin,
// by the labels and, for an EndpointSlice, by who manages it: the
// provider's EndpointSlice controller labels its slices with those of the
// twin's Service, the origin labels among them.
func TestReflectedInTwin(t *testing.T) {
	origin := originLabels(homeID, "shop")
	with := func(extra map[string]string) map[string]string {
		l := maps.Clone(origin)
		maps.Copy(l, extra)
		return l
	}
	tests := []struct {
		name string
		obj  client.Object
		want bool
	}{
		{"a Service copy", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: origin}}, true},
		{"another home cluster's copy", &corev1.Service{ObjectMeta: metav1.ObjectMeta{Labels: originLabels("other", "shop")}}, false},
		{"no origin labels", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}}, false},
		{"a ConfigMap copy labelled as managed by another", &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Labels: with(map[string]string{discoveryv1.LabelManagedBy: endpointSliceController})}}, true},
		{"a slice copy", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Labels: with(map[string]string{discoveryv1.LabelManagedBy: wellknown.EndpointSliceManager})}}, true},
		{"the provider's own slice of a copied Service", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Labels: with(map[string]string{discoveryv1.LabelManagedBy: endpointSliceController})}}, false},
		{"a slice without a manager", &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Labels: origin}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(reflected(tt.obj, homeID)).To(Equal(tt.want))
			// The selector the sweep lists with says the same.
			sel := labels.SelectorFromSet(labels.Set(oursSelector(tt.obj, homeID)))
			g.Expect(sel.Matches(labels.Set(tt.obj.GetLabels()))).To(Equal(tt.want))
		})
	}
}

// TestRemotePodHomeAPIServer: with the home API server known, every
// container and init container reaches it through the variables
// rest.InClusterConfig reads, set before its own env so that its references
// expand to them; a name the container sets itself keeps its value.
func TestRemotePodHomeAPIServer(t *testing.T) {
	home := HomeAPIServer{Host: "api.home.example.com", Port: "6443"}
	homeEnv := []corev1.EnvVar{
		{Name: "KUBERNETES_SERVICE_HOST", Value: "api.home.example.com"},
		{Name: "KUBERNETES_SERVICE_PORT", Value: "6443"},
		{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "6443"},
	}
	own := []corev1.EnvVar{{Name: "URL", Value: "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"}}
	tests := []struct {
		name     string
		api      HomeAPIServer
		init     []corev1.EnvVar // of the only init container
		app      []corev1.EnvVar // of the only container
		wantInit []corev1.EnvVar
		wantApp  []corev1.EnvVar
	}{
		{name: "unknown: env left alone", api: HomeAPIServer{}, app: own, wantApp: own},
		{name: "unknown, no env", api: HomeAPIServer{}},
		{name: "known: containers and init containers", api: home,
			wantInit: homeEnv, wantApp: homeEnv},
		{name: "known: before the container's own env", api: home, app: own,
			wantInit: homeEnv, wantApp: append(slices.Clone(homeEnv), own...)},
		{name: "a container's own value wins", api: home,
			init:     []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "10.0.0.1"}},
			app:      []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_PORT", Value: "8443"}, {Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "8443"}},
			wantInit: []corev1.EnvVar{homeEnv[1], homeEnv[2], {Name: "KUBERNETES_SERVICE_HOST", Value: "10.0.0.1"}},
			wantApp:  []corev1.EnvVar{homeEnv[0], {Name: "KUBERNETES_SERVICE_PORT", Value: "8443"}, {Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "8443"}}},
		{name: "a container that sets them all is left alone", api: home,
			app:      []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "1"}, {Name: "KUBERNETES_SERVICE_HOST", Value: "h"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "1"}},
			wantInit: homeEnv,
			wantApp:  []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "1"}, {Name: "KUBERNETES_SERVICE_HOST", Value: "h"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "1"}}},
		{name: "an IPv6 host, without brackets", api: HomeAPIServer{Host: "2001:db8::1", Port: "443"},
			wantInit: []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "2001:db8::1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "443"}, {Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "443"}},
			wantApp:  []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_HOST", Value: "2001:db8::1"}, {Name: "KUBERNETES_SERVICE_PORT", Value: "443"}, {Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "443"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			p := homePod()
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox", Env: slices.Clone(tt.init)}}
			p.Spec.Containers = []corev1.Container{{Name: "app", Image: "nginx", Env: slices.Clone(tt.app)}}
			before := p.DeepCopy()
			r := RemotePod(p, "twin", homeID, tt.api)
			g.Expect(p).To(Equal(before), "the home pod is not modified")
			g.Expect(r.Spec.InitContainers[0].Env).To(Equal(tt.wantInit), "init container")
			g.Expect(r.Spec.Containers[0].Env).To(Equal(tt.wantApp), "container")
		})
	}
}

func TestParseHomeAPIServer(t *testing.T) {
	tests := []struct {
		url     string
		want    HomeAPIServer
		wantErr string
	}{
		{url: "", want: HomeAPIServer{}},
		{url: "https://api.home.example.com:6443", want: HomeAPIServer{Host: "api.home.example.com", Port: "6443"}},
		{url: "https://api.home.example.com", want: HomeAPIServer{Host: "api.home.example.com", Port: "443"}},
		{url: "https://203.0.113.10/", want: HomeAPIServer{Host: "203.0.113.10", Port: "443"}},
		{url: "https://[2001:db8::1]:6443", want: HomeAPIServer{Host: "2001:db8::1", Port: "6443"}},
		{url: "http://api.home.example.com", wantErr: `--api-server-url: "http://api.home.example.com" is not of the form https://HOST[:PORT]`},
		{url: "https://api.home.example.com/k8s", wantErr: "must not have a path"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			g := NewWithT(t)
			got, err := ParseHomeAPIServer(tt.url)
			if tt.wantErr != "" {
				g.Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
				return
			}
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(got).To(Equal(tt.want))
		})
	}
}

// forwardedUpdate writes only when what the home pod forwards differs, and
// then changes only that: the provider's own keys and fields stay.
func TestForwardedUpdate(t *testing.T) {
	created := func() *corev1.Pod {
		r := RemotePod(homePod(), "shop-x", homeID, HomeAPIServer{})
		r.Spec.NodeName = "worker-3" // the provider's scheduler's
		r.Labels["cni.example/net"] = "blue"
		r.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
		return r
	}
	tests := []struct {
		name   string
		home   func(*corev1.Pod)
		remote func(*corev1.Pod) // the remote pod before, as the provider left it
		// changed is nil when nothing is written; else what the update
		// holds, checked on it.
		changed func(Gomega, *corev1.Pod)
	}{{
		name: "nothing to forward",
		home: func(*corev1.Pod) {},
	}, {
		name:   "a status change of the remote pod alone",
		home:   func(*corev1.Pod) {},
		remote: func(r *corev1.Pod) { r.Status.Phase = corev1.PodRunning },
	}, {
		name: "a label changed at home",
		home: func(p *corev1.Pod) { p.Labels["app"] = "web2" },
		changed: func(g Gomega, u *corev1.Pod) {
			g.Expect(u.Labels).To(HaveKeyWithValue("app", "web2"))
			g.Expect(u.Labels).To(HaveKeyWithValue("cni.example/net", "blue"))
		},
	}, {
		name: "an annotation removed at home",
		home: func(p *corev1.Pod) { delete(p.Annotations, "note") },
		changed: func(g Gomega, u *corev1.Pod) {
			g.Expect(u.Annotations).NotTo(HaveKey("note"))
			g.Expect(u.Annotations).To(HaveKey(wellknown.OriginPodUIDAnnotation))
		},
	}, {
		name:    "an image changed at home",
		home:    func(p *corev1.Pod) { p.Spec.Containers[0].Image = "nginx:2" },
		changed: func(g Gomega, u *corev1.Pod) { g.Expect(u.Spec.Containers[0].Image).To(Equal("nginx:2")) },
	}, {
		name:   "an init container image the provider changed is set back",
		home:   func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}} },
		remote: func(r *corev1.Pod) { r.Spec.InitContainers[0].Image = "busybox:theirs" },
		changed: func(g Gomega, u *corev1.Pod) {
			g.Expect(u.Spec.InitContainers[0].Image).To(Equal("busybox"))
		},
	}, {
		name: "an active deadline set at home",
		home: func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To[int64](60) },
		changed: func(g Gomega, u *corev1.Pod) {
			g.Expect(u.Spec.ActiveDeadlineSeconds).To(HaveValue(BeEquivalentTo(60)))
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			r := created()
			if tt.remote != nil {
				tt.remote(r)
			}
			home := homePod()
			home.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
			tt.home(home)
			before := r.DeepCopy()
			upd := forwardedUpdate(r, RemotePod(home, "shop-x", homeID, HomeAPIServer{}))
			g.Expect(r).To(Equal(before), "the remote pod, from the informer's cache, is not modified")
			if tt.changed == nil {
				g.Expect(upd).To(BeNil())
				return
			}
			g.Expect(upd).NotTo(BeNil())
			tt.changed(g, upd)
			g.Expect(upd.Spec.NodeName).To(Equal("worker-3"), "what the provider set stays")
			g.Expect(forwardedUpdate(upd, RemotePod(home, "shop-x", homeID, HomeAPIServer{}))).To(BeNil(), "once written, nothing more")
		})
	}
}
