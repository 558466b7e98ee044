package virtualkubelet

import (
	"strings"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/api/wellknown"
)

func TestReflectedKeptAtHome(t *testing.T) {
	skip := func(v string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: "x", Annotations: map[string]string{wellknown.SkipReflectionAnnotation: v}}
	}
	tests := []struct {
		name      string
		home      client.Object
		reflected bool
	}{
		{"configmap kept at home", &corev1.ConfigMap{ObjectMeta: skip("true")}, false},
		{"secret kept at home", &corev1.Secret{ObjectMeta: skip("true")}, false},
		{"service kept at home", &corev1.Service{ObjectMeta: skip("true")}, false},
		{"another value reflects", &corev1.ConfigMap{ObjectMeta: skip("false")}, true},
		{"not a reflected kind", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(Reflected(tt.home)).To(Equal(tt.reflected))
		})
	}
}

func TestNeededBy(t *testing.T) {
	optional := ptr.To(true)
	ref := func(name string) corev1.LocalObjectReference { return corev1.LocalObjectReference{Name: name} }
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		ImagePullSecrets: []corev1.LocalObjectReference{ref("pull")},
		Volumes: []corev1.Volume{
			{Name: "a", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("cm-volume")}}},
			{Name: "b", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: ref("cm-optional"), Optional: optional}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s-volume"}}},
			{Name: "d", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: ref("cm-projected")}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: ref("s-projected")}},
				{Secret: &corev1.SecretProjection{LocalObjectReference: ref("s-optional"), Optional: optional}},
			}}}},
		},
		InitContainers: []corev1.Container{{Name: "init", EnvFrom: []corev1.EnvFromSource{
			{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: ref("cm-init")}},
			{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: ref("s-init")}},
		}}},
		Containers: []corev1.Container{{Name: "app", Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: ref("cm-env"), Key: "k"}}},
			{Name: "B", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("s-env"), Key: "k"}}},
			{Name: "C", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: ref("s-env-optional"), Key: "k", Optional: optional}}},
			{Name: "D", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		}}},
	}}
	g := NewWithT(t)
	g.Expect(configMapReflector{}.neededBy(pod)).To(ConsistOf("cm-volume", "cm-projected", "cm-init", "cm-env"))
	g.Expect(secretReflector{}.neededBy(pod)).To(ConsistOf("s-volume", "s-projected", "s-init", "s-env"), "optional ones and image pull Secrets are not needed to start")
	g.Expect(serviceReflector{}.neededBy(pod)).To(BeEmpty())
}

// What an update of a reflected object keeps of the copy in the twin.
func TestUpdateOf(t *testing.T) {
	home := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web", "tier": "front"}},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeLoadBalancer, ClusterIP: "10.0.0.1", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "http", Port: 80, NodePort: 30080}}}}
	created := func() *corev1.Service {
		cur := ReflectedObject(home, "twin", homeID).(*corev1.Service)
		cur.ResourceVersion = "7"
		cur.Spec.ClusterIP, cur.Spec.ClusterIPs, cur.Spec.Ports[0].NodePort = "10.9.0.1", []string{"10.9.0.1"}, 31000
		// A load balancer controller's annotation and finalizer.
		cur.Annotations["lb.example/pool"] = "blue"
		cur.Finalizers = []string{"service.kubernetes.io/load-balancer-cleanup"}
		return cur
	}
	r := serviceReflector{}

	t.Run("the provider's keys, finalizers and allocations stay", func(t *testing.T) {
		g := NewWithT(t)
		cur := created()
		edited := home.DeepCopy()
		delete(edited.Labels, "tier")
		edited.Spec.Ports[0].Port = 8080
		upd := updateOf(r, cur, ReflectedObject(edited, "twin", homeID)).(*corev1.Service)
		g.Expect(upd.Labels).NotTo(HaveKey("tier"), "removed at home")
		g.Expect(upd.Annotations).To(HaveKeyWithValue("lb.example/pool", "blue"))
		g.Expect(upd.Finalizers).To(Equal(cur.Finalizers))
		g.Expect(upd.ResourceVersion).To(Equal("7"))
		g.Expect(upd.Spec.ClusterIP).To(Equal("10.9.0.1"))
		g.Expect(upd.Spec.Ports[0].NodePort).To(BeEquivalentTo(31000))
		g.Expect(upd.Spec.Ports[0].Port).To(BeEquivalentTo(8080))
		g.Expect(unchanged(r, cur, upd)).To(BeFalse())
		g.Expect(inSync(cur, ReflectedObject(home, "twin", homeID))).To(BeTrue(), "what the provider added makes no change")
	})

	t.Run("a copy an older release made, without the lists, gets them and keeps its keys", func(t *testing.T) {
		g := NewWithT(t)
		cur := created()
		delete(cur.Annotations, wellknown.RemotePodManagedLabelsAnnotation)
		delete(cur.Annotations, wellknown.RemotePodManagedAnnotationsAnnotation)
		cur.Labels["provider.example/zone"] = "a"
		want := ReflectedObject(home, "twin", homeID)
		upd := updateOf(r, cur, want)
		g.Expect(upd.GetLabels()).To(HaveKeyWithValue("provider.example/zone", "a"))
		g.Expect(upd.GetAnnotations()).To(HaveKeyWithValue(wellknown.RemotePodManagedLabelsAnnotation, want.GetAnnotations()[wellknown.RemotePodManagedLabelsAnnotation]))
		g.Expect(upd.GetAnnotations()).To(HaveKeyWithValue("lb.example/pool", "blue"))
		g.Expect(unchanged(r, cur, upd)).To(BeFalse(), "written once, with the lists")
	})
}

func TestImmutable(t *testing.T) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cfg"}, Data: map[string]string{"k": "v"}, Immutable: ptr.To(true)}
	cmLabelled := cm.DeepCopy()
	cmLabelled.Labels = map[string]string{"team": "a"}
	cmData := cm.DeepCopy()
	cmData.Data["k"] = "w"
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "db"}, Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"k": []byte("v")}}
	secretTLS := secret.DeepCopy()
	secretTLS.Type = corev1.SecretTypeTLS
	secretImmutable := secret.DeepCopy()
	secretImmutable.Immutable = ptr.To(true)
	secretData := secretImmutable.DeepCopy()
	secretData.Data["k"] = []byte("w")
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: "10.0.0.1"}}
	svcHeadless := svc.DeepCopy()
	svcHeadless.Spec.ClusterIP = corev1.ClusterIPNone
	svcPorts := svc.DeepCopy()
	svcPorts.Spec.Ports = []corev1.ServicePort{{Port: 80}}

	tests := []struct {
		name      string
		cur, want client.Object
		immutable bool
	}{
		{"an immutable ConfigMap's metadata changes in place", cm, cmLabelled, false},
		{"an immutable ConfigMap's data does not", cm, cmData, true},
		{"a mutable Secret changes in place", secret, secretData, false},
		{"an immutable Secret's data does not", secretImmutable, secretData, true},
		{"a Secret's type does not", secret, secretTLS, true},
		{"a Service's ports change in place", svc, svcPorts, false},
		{"a Service does not become headless in place", svc, svcHeadless, true},
		{"nor stops being headless", svcHeadless, svc, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			g.Expect(reflectorOf(tt.cur).immutable(tt.cur, tt.want)).To(Equal(tt.immutable))
		})
	}
}

func TestEndpointSliceCopy(t *testing.T) {
	const node = "stretch-eu"
	ep := func(addr, nodeName string, ready bool) discoveryv1.Endpoint {
		return discoveryv1.Endpoint{
			Addresses:  []string{addr},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready), Terminating: ptr.To(false)},
			Hostname:   ptr.To("h-" + addr),
			Zone:       ptr.To("z1"),
			NodeName:   ptr.To(nodeName),
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: "p-" + addr},
			Hints:      &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "z1"}}},
		}
	}
	slice := func(managedBy string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-x1", Labels: map[string]string{
				discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: managedBy}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Port: ptr.To[int32](8080), Protocol: ptr.To(corev1.ProtocolTCP)}},
			Endpoints:   eps,
		}
	}
	tests := []struct {
		name string
		home *discoveryv1.EndpointSlice
		// want is the addresses of the copy; nil: no copy.
		want []string
	}{
		{"pods on this virtual node are the provider's own", slice("endpointslice-controller.k8s.io",
			ep("10.0.0.1", "node-a", true), ep("10.20.0.1", node, true), ep("10.30.0.1", "stretch-us", false)), []string{"10.0.0.1", "10.30.0.1"}},
		{"a slice of pods all on this virtual node has no copy", slice("endpointslice-controller.k8s.io", ep("10.20.0.1", node, true)), nil},
		{"a slice written by hand is copied whole", slice("", ep("10.20.0.1", node, true), ep("10.0.0.1", "", true)), []string{"10.20.0.1", "10.0.0.1"}},
		{"a mirrored slice is copied whole", slice("endpointslicemirroring-controller.k8s.io", ep("10.20.0.1", node, true)), []string{"10.20.0.1"}},
		{"an empty slice has no copy", slice(""), nil},
	}
	r := endpointSliceReflector{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewWithT(t)
			got := r.toRemote(tt.home, reflectedMeta(tt.home, "twin", homeID), peeringView{nodeName: node})
			if tt.want == nil {
				g.Expect(got).To(BeNil())
				return
			}
			s := got.(*discoveryv1.EndpointSlice)
			var addrs []string
			for _, e := range s.Endpoints {
				addrs = append(addrs, e.Addresses...)
				g.Expect(e.NodeName).To(BeNil(), "a home node means nothing on the provider")
				g.Expect(e.TargetRef).To(BeNil(), "a home pod means nothing on the provider")
				g.Expect(e.Hints).To(BeNil(), "computed for the home cluster's zones")
				g.Expect(e.Hostname).To(HaveValue(Equal("h-" + e.Addresses[0])))
				g.Expect(e.Zone).To(HaveValue(Equal("z1")))
				g.Expect(e.Conditions).To(Equal(ep(e.Addresses[0], "", e.Conditions.Ready != nil && *e.Conditions.Ready).Conditions))
			}
			g.Expect(addrs).To(Equal(tt.want))
			g.Expect(s.Namespace).To(Equal("twin"))
			g.Expect(s.Ports).To(Equal(tt.home.Ports))
			g.Expect(s.AddressType).To(Equal(discoveryv1.AddressTypeIPv4))
			g.Expect(s.Labels).To(HaveKeyWithValue(discoveryv1.LabelManagedBy, wellknown.EndpointSliceManager))
			g.Expect(s.Labels).To(HaveKeyWithValue(discoveryv1.LabelServiceName, "web"))
			g.Expect(s.Labels).To(HaveKeyWithValue(wellknown.ReflectedLabel, "true"))
			g.Expect(strings.Split(s.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ContainElement(discoveryv1.LabelManagedBy))
			g.Expect(tt.home.Endpoints).NotTo(BeEmpty())
			g.Expect(tt.home.Endpoints[0].NodeName).NotTo(BeNil(), "the home slice is left as it is")
		})
	}

	g := NewWithT(t)
	g.Expect(Reflected(slice(""))).To(BeTrue())
	noService := slice("")
	delete(noService.Labels, discoveryv1.LabelServiceName)
	g.Expect(Reflected(noService)).To(BeFalse(), "a slice of no Service")
	g.Expect(r.neededBy(&corev1.Pod{})).To(BeEmpty())
	ipv6 := slice("", ep("fd00::1", "", true))
	ipv6.AddressType = discoveryv1.AddressTypeIPv6
	cur := slice("", ep("10.0.0.1", "", true))
	g.Expect(r.immutable(cur, ipv6)).To(BeTrue(), "the address type does not change in place")
	g.Expect(r.immutable(cur, slice("", ep("10.0.0.2", "", true)))).To(BeFalse())
}

// What of a home claim its copy on a provider gets, and which claims are
// reflected at all (design §4.23).
func TestClaimReflector(t *testing.T) {
	r := claimReflector{}
	home := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data", UID: "u-1", Labels: map[string]string{"app": "db"}, Annotations: map[string]string{
			"team": "a", annSelectedNode: "stretch-eu", annStorageProvisioner: wellknown.VolumeProvisioner, annBetaStorageProvisioner: wellknown.VolumeProvisioner,
			"pv.kubernetes.io/bind-completed": "yes", corev1.LastAppliedConfigAnnotation: "{}",
		}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}, StorageClassName: ptr.To("stretch"), VolumeName: "pvc-u-1",
			Selector:   &metav1.LabelSelector{MatchLabels: map[string]string{"disk": "ssd"}},
			DataSource: &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "seed"},
			Resources:  corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}
	g := NewWithT(t)
	c := r.toRemote(home, reflectedMeta(home, "twin", "home-id"), peeringView{}).(*corev1.PersistentVolumeClaim)
	g.Expect(c.Namespace).To(Equal("twin"))
	g.Expect(c.Labels).To(HaveKeyWithValue("app", "db"))
	g.Expect(c.Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, "home-id"))
	g.Expect(c.Annotations).To(Equal(map[string]string{
		"team": "a", originClaimUIDAnnotation: "u-1",
		wellknown.RemotePodManagedLabelsAnnotation:      "app,stretch.dev/origin-cluster-id,stretch.dev/origin-namespace,stretch.dev/reflected",
		wellknown.RemotePodManagedAnnotationsAnnotation: "stretch.dev/origin-claim-uid,team",
	}), "the home scheduler's and volume controllers' annotations mean nothing on the provider")
	g.Expect(c.Spec).To(Equal(corev1.PersistentVolumeClaimSpec{
		AccessModes: home.Spec.AccessModes, StorageClassName: ptr.To("stretch"), Resources: home.Spec.Resources,
	}), "no volume name, selector or data source: they name home objects")

	t.Run("an update keeps the copy's spec, and never replaces it", func(t *testing.T) {
		g := NewWithT(t)
		cur := c.DeepCopy()
		cur.Spec.StorageClassName, cur.Spec.VolumeName = ptr.To("fast"), "pv-on-provider"
		bigger := home.DeepCopy()
		bigger.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("5Gi")
		want := r.toRemote(bigger, reflectedMeta(bigger, "twin", "home-id"), peeringView{})
		upd := updateOf(r, cur, want)
		g.Expect(upd.(*corev1.PersistentVolumeClaim).Spec).To(Equal(cur.Spec))
		g.Expect(unchanged(r, cur, upd)).To(BeTrue())
		g.Expect(r.immutable(cur, want)).To(BeFalse())
	})

	t.Run("which claims are reflected", func(t *testing.T) {
		g := NewWithT(t)
		k := &Kubelet{Config: Config{NodeName: "stretch-eu"}}
		g.Expect(r.reflected(home) && r.reflectedBy(k, home)).To(BeTrue())
		other := home.DeepCopy()
		other.Annotations[annSelectedNode] = "stretch-us"
		g.Expect(r.reflectedBy(k, other)).To(BeFalse(), "another provider's")
		unplaced := home.DeepCopy()
		delete(unplaced.Annotations, annSelectedNode)
		g.Expect(r.reflected(unplaced)).To(BeFalse(), "no node chosen yet")
		foreign := home.DeepCopy()
		foreign.Annotations[annStorageProvisioner], foreign.Annotations[annBetaStorageProvisioner] = "ebs.csi.aws.com", "ebs.csi.aws.com"
		g.Expect(r.reflected(foreign)).To(BeFalse(), "another provisioner's")
		kept := home.DeepCopy()
		kept.Annotations[wellknown.SkipReflectionAnnotation] = "true"
		g.Expect(Reflected(kept)).To(BeFalse())
		g.Expect(r.copyOf(home, c)).To(BeTrue())
		again := home.DeepCopy()
		again.UID = "u-2"
		g.Expect(r.copyOf(again, c)).To(BeFalse(), "the copy of an earlier claim of that name")
	})

	t.Run("the claims a pod needs, its ephemeral volumes' included", func(t *testing.T) {
		g := NewWithT(t)
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data-web-0"}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{}}},
			{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}}}
		g.Expect(r.neededBy(pod)).To(ConsistOf("data-web-0", "web-0-scratch"))
	})
}
