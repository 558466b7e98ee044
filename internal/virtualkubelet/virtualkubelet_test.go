package virtualkubelet_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/testenv"
	"stretch.dev/stretch/internal/testenv/fleet"
	"stretch.dev/stretch/internal/virtualkubelet"
)

const homeID = "3d7f1a52-8c1e-4b7a-9f0e-6a2b5c4d3e21"

var home, eu *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { home, eu = s[0], s[1] }, "home", "eu")
}

var ctx = context.Background()

func newG(t *testing.T) *WithT {
	g := NewWithT(t)
	g.SetDefaultEventuallyTimeout(30 * time.Second)
	return g
}

// offload creates namespace ns at home, offloads it to every provider and
// waits until it is Ready; it returns the twin's name.
func offload(t *testing.T, g *WithT, ns string) string {
	t.Helper()
	return offloadFrom(t, g, home, homeID, ns)
}

// offloadFrom is offload from home cluster h, whose ID is id.
func offloadFrom(t *testing.T, g *WithT, h *testenv.APIServer, id, ns string) string {
	t.Helper()
	g.Expect(client.IgnoreAlreadyExists(h.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))).To(Succeed())
	off := &offloadingv1alpha1.NamespaceOffloading{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "offloading"}}
	g.Expect(h.Client.Create(ctx, off)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(h.Client.Get(ctx, client.ObjectKeyFromObject(off), off)).To(Succeed())
		g.Expect(off.Status.OffloadingPhase).To(Equal(offloadingv1alpha1.ReadyPhase))
	}).Should(Succeed())
	return ns + "-" + id
}

// boundPod is a pod bound to the virtual node of eu, as the scheduler binds
// it, mounting a service account token as the ServiceAccount admission
// plugin would.
func boundPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{
			NodeName:           peeringv1alpha1.VirtualNodeName(eu.Name),
			ServiceAccountName: "builder",
			Containers:         []corev1.Container{{Name: "app", Image: "nginx"}},
			Volumes: []corev1.Volume{{Name: "kube-api-access", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](3607)}},
				{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"}, Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			}}}}},
		},
	}
}

func remotePod(g Gomega, twin, name string) *corev1.Pod {
	p := &corev1.Pod{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: name}, p)).To(Succeed())
	return p
}

// warnings returns the reasons of the events about object name in ns.
func reasons(g Gomega, ns, name string) []string {
	list := &eventsv1.EventList{}
	g.Expect(home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Name == name {
			out = append(out, e.Reason)
		}
	}
	return out
}

// counts returns how many times each event of that reason about object
// name in ns was recorded (the recorder folds repeats into one event).
func counts(g Gomega, ns, name, reason string) []int32 {
	list := &corev1.EventList{}
	g.Expect(home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
	var out []int32
	for _, e := range list.Items {
		if e.InvolvedObject.Name == name && e.Reason == reason {
			out = append(out, e.Count)
		}
	}
	return out
}

func edit[T client.Object](t *testing.T, c client.Client, obj T, change func(T)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		change(obj)
		return c.Update(ctx, obj)
	})
	if err != nil {
		t.Fatalf("editing %s: %v", obj.GetName(), err)
	}
}

func TestPodsRunOnTheProvider(t *testing.T) {
	g := newG(t)
	st := fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "shop"
	twin := offload(t, g, ns)
	g.Expect(home.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "builder"}})).To(Succeed())
	g.Expect(home.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": "home CA"}})).To(Succeed())

	pod := boundPod(ns, "web")
	g.Expect(home.Client.Create(ctx, pod)).To(Succeed())

	var first types.UID
	t.Run("the pod is created in the twin, translated", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func(g Gomega) {
			r := remotePod(g, twin, "web")
			g.Expect(r.Labels).To(HaveKeyWithValue(wellknown.OriginNamespaceLabel, ns))
			g.Expect(r.Labels).To(HaveKeyWithValue(wellknown.OriginClusterIDLabel, homeID))
			g.Expect(r.Annotations).To(HaveKeyWithValue(wellknown.OriginPodUIDAnnotation, string(pod.UID)))
			g.Expect(r.Spec.NodeName).To(BeEmpty())
			g.Expect(r.Spec.Volumes[0].Projected.Sources[0].Secret.Name).To(Equal("stretch-token-builder"))
			g.Expect(r.Spec.Containers[0].Env).To(BeEmpty(), "without --api-server-url, env is left alone")
			first = r.UID
		}).Should(Succeed())
		g.Eventually(func(g Gomega) []string { return reasons(g, ns, "web") }).Should(ContainElement(virtualkubelet.OffloadedReason))
		// Its token cannot reach home from there: the pod says so.
		g.Eventually(func(g Gomega) []string { return reasons(g, ns, "web") }).Should(ContainElement(virtualkubelet.HomeAPIServerUnknownReason))
	})

	t.Run("the token it mounts is a home token, with the home CA and namespace", func(t *testing.T) {
		g := newG(t)
		s := &corev1.Secret{}
		g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "stretch-token-builder"}, s)).To(Succeed())
		g.Expect(s.Data[virtualkubelet.TokenKey]).NotTo(BeEmpty())
		g.Expect(string(s.Data[virtualkubelet.CACertKey])).To(Equal("home CA"))
		g.Expect(string(s.Data[virtualkubelet.NamespaceKey])).To(Equal(ns))
	})

	t.Run("a token due for renewal is renewed; one deleted behind our back comes back", func(t *testing.T) {
		g := newG(t)
		s := &corev1.Secret{}
		key := client.ObjectKey{Namespace: twin, Name: "stretch-token-builder"}
		g.Expect(eu.Client.Get(ctx, key, s)).To(Succeed())
		token := string(s.Data[virtualkubelet.TokenKey])
		// As if 80% of its life had passed.
		edit(t, eu.Client, s, func(s *corev1.Secret) {
			s.Annotations[wellknown.TokenRefreshAnnotation] = time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
		})
		g.Eventually(func(g Gomega) {
			g.Expect(eu.Client.Get(ctx, key, s)).To(Succeed())
			g.Expect(string(s.Data[virtualkubelet.TokenKey])).NotTo(Equal(token))
			at, err := time.Parse(time.RFC3339, s.Annotations[wellknown.TokenRefreshAnnotation])
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(at).To(BeTemporally(">", time.Now().Add(30*time.Minute)))
		}).Should(Succeed())

		g.Expect(eu.Client.Delete(ctx, s)).To(Succeed())
		g.Eventually(func(g Gomega) {
			got := &corev1.Secret{}
			g.Expect(eu.Client.Get(ctx, key, got)).To(Succeed())
			g.Expect(got.UID).NotTo(Equal(s.UID))
			g.Expect(got.Data[virtualkubelet.TokenKey]).NotTo(BeEmpty())
		}).Should(Succeed())
	})

	t.Run("the remote status comes home", func(t *testing.T) {
		g := newG(t)
		now := metav1.Now()
		r := remotePod(g, twin, "web")
		r.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.20.0.7", PodIPs: []corev1.PodIP{{IP: "10.20.0.7"}}, StartTime: &now,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "app", Image: "nginx", ImageID: "nginx@sha256:0", Ready: true, RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}},
		}
		g.Expect(eu.Client.Status().Update(ctx, r)).To(Succeed())
		g.Eventually(func(g Gomega) {
			got := &corev1.Pod{}
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(pod), got)).To(Succeed())
			g.Expect(got.Status.Phase).To(Equal(corev1.PodRunning))
			g.Expect(got.Status.PodIP).To(Equal("10.20.0.7"))
			g.Expect(got.Status.ContainerStatuses).To(ConsistOf(And(HaveField("Ready", true), HaveField("RestartCount", BeEquivalentTo(2)))))
		}).Should(Succeed())

		// A remote change that leaves the status as it is writes nothing
		// home; the next status change is written once.
		before, err := testenv.APIWrites(ctx, home.Config)
		g.Expect(err).NotTo(HaveOccurred())
		for i := range 3 {
			edit(t, eu.Client, remotePod(g, twin, "web"), func(p *corev1.Pod) {
				p.Annotations["bench.example/touch"] = fmt.Sprint(i)
			})
		}
		r = remotePod(g, twin, "web")
		r.Status.PodIP, r.Status.PodIPs = "10.20.0.8", []corev1.PodIP{{IP: "10.20.0.8"}}
		g.Expect(eu.Client.Status().Update(ctx, r)).To(Succeed())
		g.Eventually(func(g Gomega) string {
			got := &corev1.Pod{}
			g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(pod), got)).To(Succeed())
			return got.Status.PodIP
		}).Should(Equal("10.20.0.8"))
		after, err := testenv.APIWrites(ctx, home.Config)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(after.Since(before)).To(HaveKeyWithValue("PUT pods/status", BeEquivalentTo(1)), "home status writes: %v", after.Since(before))
	})

	t.Run("events the provider records on the remote pod appear on the home pod", func(t *testing.T) {
		g := newG(t)
		r := remotePod(g, twin, "web")
		now := metav1.Now()
		g.Expect(eu.Client.Create(ctx, &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: twin, Name: "web.pulled"},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: twin, Name: "web", UID: r.UID, APIVersion: "v1"},
			Type:           corev1.EventTypeNormal, Reason: "Pulled", Message: "Successfully pulled image nginx",
			FirstTimestamp: now, LastTimestamp: now, Count: 1, Source: corev1.EventSource{Component: "kubelet"},
		})).To(Succeed())
		g.Eventually(func(g Gomega) {
			list := &eventsv1.EventList{}
			g.Expect(home.Client.List(ctx, list, client.InNamespace(ns))).To(Succeed())
			g.Expect(list.Items).To(ContainElement(And(
				HaveField("Regarding.Name", "web"), HaveField("Reason", "Pulled"),
				HaveField("Note", "Successfully pulled image nginx (on provider eu)"))))
		}).Should(Succeed())
	})

	t.Run("a remote pod deleted behind our back is created again", func(t *testing.T) {
		g := newG(t)
		g.Expect(eu.Client.Delete(ctx, remotePod(g, twin, "web"), client.GracePeriodSeconds(0))).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(remotePod(g, twin, "web").UID).NotTo(Equal(first))
		}).Should(Succeed())
		g.Eventually(func(g Gomega) []string { return reasons(g, ns, "web") }).Should(ContainElement(virtualkubelet.RecreatedReason))
		first = remotePod(g, twin, "web").UID
		// Said once per pod, not at each creation of its remote pod.
		g.Consistently(func(g Gomega) []int32 { return counts(g, ns, "web", virtualkubelet.HomeAPIServerUnknownReason) }).
			WithTimeout(2 * time.Second).Should(Equal([]int32{1}))
	})

	cfg := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"color": "blue"}}
	t.Run("ConfigMaps, Secrets and Services are reflected and follow their edits", func(t *testing.T) {
		g := newG(t)
		g.Expect(home.Client.Create(ctx, cfg)).To(Succeed())
		g.Expect(home.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, StringData: map[string]string{"password": "s3cret"}})).To(Succeed())
		g.Expect(home.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})).To(Succeed())
		g.Eventually(func(g Gomega) {
			got := &corev1.ConfigMap{}
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "settings"}, got)).To(Succeed())
			g.Expect(got.Data).To(Equal(map[string]string{"color": "blue"}))
			s := &corev1.Secret{}
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "db"}, s)).To(Succeed())
			g.Expect(string(s.Data["password"])).To(Equal("s3cret"))
			svc := &corev1.Service{}
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "web"}, svc)).To(Succeed())
			g.Expect(svc.Spec.Selector).To(Equal(map[string]string{"app": "web"}))
		}).Should(Succeed())

		edit(t, home.Client, cfg, func(c *corev1.ConfigMap) { c.Data["color"] = "green" })
		g.Eventually(func(g Gomega) map[string]string {
			got := &corev1.ConfigMap{}
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "settings"}, got)).To(Succeed())
			return got.Data
		}).Should(Equal(map[string]string{"color": "green"}))

		// An edit on the provider is undone.
		edit(t, eu.Client, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "settings"}}, func(c *corev1.ConfigMap) { c.Data["color"] = "red" })
		g.Eventually(func(g Gomega) map[string]string {
			got := &corev1.ConfigMap{}
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "settings"}, got)).To(Succeed())
			return got.Data
		}).Should(Equal(map[string]string{"color": "green"}))

		g.Eventually(func(g Gomega) float64 { return gauge(g, st, "stretch_virtualkubelet_reflected_objects", "ConfigMap") }).Should(BeNumerically(">=", 1))
	})

	t.Run("an object Stretch did not create on the provider is never overwritten", func(t *testing.T) {
		g := newG(t)
		theirs := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "shared"}, Data: map[string]string{"owner": "provider"}}
		g.Expect(eu.Client.Create(ctx, theirs)).To(Succeed())
		g.Expect(home.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}, Data: map[string]string{"owner": "home"}})).To(Succeed())
		g.Eventually(func(g Gomega) []string { return reasons(g, ns, "shared") }).Should(ContainElement(virtualkubelet.ReflectionConflictReason))
		got := &corev1.ConfigMap{}
		g.Expect(eu.Client.Get(ctx, client.ObjectKeyFromObject(theirs), got)).To(Succeed())
		g.Expect(got.Data).To(Equal(map[string]string{"owner": "provider"}))
		g.Expect(got.Labels).NotTo(HaveKey(wellknown.ReflectedLabel))

		// Deleting the home one leaves it too.
		g.Expect(home.Client.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "shared"}})).To(Succeed())
		g.Consistently(func(g Gomega) { g.Expect(eu.Client.Get(ctx, client.ObjectKeyFromObject(theirs), got)).To(Succeed()) }).
			WithTimeout(2 * time.Second).Should(Succeed())
	})

	t.Run("a restarted home manager neither deletes nor duplicates the remote pod", func(t *testing.T) {
		g := newG(t)
		st.StopHome()
		edit(t, home.Client, cfg, func(c *corev1.ConfigMap) { c.Data["color"] = "yellow" })
		st.StartHome()
		// Once the new kubelet reflected the edit made while it was down, it
		// has looked at the pod too.
		g.Eventually(func(g Gomega) map[string]string {
			got := &corev1.ConfigMap{}
			g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "settings"}, got)).To(Succeed())
			return got.Data
		}).Should(Equal(map[string]string{"color": "yellow"}))
		g.Expect(remotePod(g, twin, "web").UID).To(Equal(first))
		list := &corev1.PodList{}
		g.Expect(eu.Client.List(ctx, list, client.InNamespace(twin))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(1))
	})

	t.Run("a provider that comes back converges", func(t *testing.T) {
		g := newG(t)
		g.Expect(eu.StopAPIServerOnly()).To(Succeed())
		restarted := false
		defer func() {
			if !restarted {
				_ = eu.RestartAPIServer()
			}
		}()
		g.Expect(home.Client.Delete(ctx, cfg)).To(Succeed())
		g.Expect(home.Client.Create(ctx, boundPod(ns, "api"))).To(Succeed())
		g.Expect(eu.RestartAPIServer()).To(Succeed())
		restarted = true
		g.Eventually(func(g Gomega) {
			g.Expect(apierrors.IsNotFound(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "settings"}, &corev1.ConfigMap{}))).To(BeTrue())
			remotePod(g, twin, "api")
		}).WithTimeout(60 * time.Second).Should(Succeed())
	})

	t.Run("label and image changes of the running home pod reach the remote pod; the provider's are undone", func(t *testing.T) {
		g := newG(t)
		// First at home, then the same edits on the provider, to be undone.
		for _, e := range []struct {
			c                client.Client
			namespace        string
			tier, image, why string
		}{
			{home.Client, ns, "front", "nginx:1.29", "the home pod's edits reach the remote pod"},
			{eu.Client, twin, "provider-set", "registry.example/other:1", "the provider's edits are undone"},
		} {
			edit(t, e.c, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: e.namespace, Name: "web"}}, func(p *corev1.Pod) {
				p.Labels["tier"] = e.tier
				p.Spec.Containers[0].Image = e.image
			})
			g.Eventually(func(g Gomega) {
				r := remotePod(g, twin, "web")
				g.Expect(r.Labels).To(HaveKeyWithValue("tier", "front"))
				g.Expect(r.Spec.Containers[0].Image).To(Equal("nginx:1.29"))
			}).Should(Succeed(), e.why)
		}
	})

	webKey := metav1.ObjectMeta{Namespace: ns, Name: "web"}
	t.Run("keys the provider adds to the remote pod stay; keys removed at home go", func(t *testing.T) {
		g := newG(t)
		edit(t, home.Client, &corev1.Pod{ObjectMeta: webKey}, func(p *corev1.Pod) {
			metav1.SetMetaDataAnnotation(&p.ObjectMeta, "example.com/owner", "team-a")
		})
		g.Eventually(func(g Gomega) map[string]string { return remotePod(g, twin, "web").Annotations }).
			Should(HaveKeyWithValue("example.com/owner", "team-a"))
		// A CNI's label and an admission webhook's annotation, say.
		edit(t, eu.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "web"}}, func(p *corev1.Pod) {
			p.Labels["cni.example/network"] = "blue"
			p.Annotations["provider.example/admitted"] = "yes"
		})
		// The user takes the pod out of a Service (its label goes) and
		// drops an annotation; a new label makes the remote pod written.
		edit(t, home.Client, &corev1.Pod{ObjectMeta: webKey}, func(p *corev1.Pod) {
			delete(p.Labels, "tier")
			delete(p.Annotations, "example.com/owner")
			p.Labels["release"] = "2"
		})
		g.Eventually(func(g Gomega) {
			r := remotePod(g, twin, "web")
			g.Expect(r.Labels).To(HaveKeyWithValue("release", "2"))
			g.Expect(r.Labels).NotTo(HaveKey("tier"), "removed at home, removed here")
			g.Expect(r.Annotations).NotTo(HaveKey("example.com/owner"), "removed at home, removed here")
			g.Expect(r.Labels).To(HaveKeyWithValue("cni.example/network", "blue"), "the provider's label stays")
			g.Expect(r.Annotations).To(HaveKeyWithValue("provider.example/admitted", "yes"), "the provider's annotation stays")
			g.Expect(strings.Split(r.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ConsistOf(
				"app", "release", wellknown.ReflectedLabel, wellknown.OriginClusterIDLabel, wellknown.OriginNamespaceLabel))
		}).Should(Succeed())
	})

	t.Run("a remote pod an older release created, without the lists of keys, gets them at its next sync", func(t *testing.T) {
		g := newG(t)
		st.StopHome()
		// As an older release left it: no lists; a key of the provider.
		edit(t, eu.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "web"}}, func(p *corev1.Pod) {
			delete(p.Annotations, wellknown.RemotePodManagedLabelsAnnotation)
			delete(p.Annotations, wellknown.RemotePodManagedAnnotationsAnnotation)
			p.Labels["legacy.example/zone"] = "a"
		})
		st.StartHome()
		g.Eventually(func(g Gomega) {
			r := remotePod(g, twin, "web")
			// The home pod's keys of now count as set by Stretch.
			g.Expect(strings.Split(r.Annotations[wellknown.RemotePodManagedLabelsAnnotation], ",")).To(ConsistOf(
				"app", "release", wellknown.ReflectedLabel, wellknown.OriginClusterIDLabel, wellknown.OriginNamespaceLabel))
			g.Expect(strings.Split(r.Annotations[wellknown.RemotePodManagedAnnotationsAnnotation], ",")).To(ConsistOf(wellknown.OriginPodUIDAnnotation))
			g.Expect(r.Labels).To(HaveKeyWithValue("legacy.example/zone", "a"))
		}).Should(Succeed())

		// Tracked from now on: a label removed at home goes; the provider's stay.
		edit(t, home.Client, &corev1.Pod{ObjectMeta: webKey}, func(p *corev1.Pod) { delete(p.Labels, "release") })
		g.Eventually(func(g Gomega) map[string]string { return remotePod(g, twin, "web").Labels }).Should(And(
			Not(HaveKey("release")), HaveKeyWithValue("legacy.example/zone", "a"), HaveKeyWithValue("cni.example/network", "blue")))
	})

	t.Run("a change of the active deadline reaches the remote pod", func(t *testing.T) {
		g := newG(t)
		// A running pod's deadline may be set, then only shortened.
		for _, d := range []int64{600, 300} {
			edit(t, home.Client, &corev1.Pod{ObjectMeta: webKey}, func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To(d) })
			g.Eventually(func(g Gomega) *int64 { return remotePod(g, twin, "web").Spec.ActiveDeadlineSeconds }).Should(Equal(ptr.To(d)))
		}
	})

	t.Run("the remote pod is deleted with the home pod's grace period", func(t *testing.T) {
		g := newG(t)
		graceful := boundPod(ns, "graceful")
		g.Expect(home.Client.Create(ctx, graceful)).To(Succeed())
		var r *corev1.Pod
		g.Eventually(func(g Gomega) { r = remotePod(g, twin, "graceful") }).Should(Succeed())
		// Bound by the provider's scheduler: a pod on no node goes at once,
		// whatever its grace period.
		g.Expect(eu.Client.SubResource("binding").Create(ctx, r, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: r.Name}, Target: corev1.ObjectReference{Kind: "Node", Name: "eu-node-1"}})).To(Succeed())
		g.Expect(home.Client.Delete(ctx, graceful, client.GracePeriodSeconds(42))).To(Succeed())
		g.Eventually(func(g Gomega) {
			r = remotePod(g, twin, "graceful")
			g.Expect(r.DeletionTimestamp).NotTo(BeNil())
			g.Expect(r.DeletionGracePeriodSeconds).To(Equal(ptr.To[int64](42)))
		}).Should(Succeed(), "the remote pod is Terminating with the home pod's grace period")
		// No kubelet there: once its containers stopped, one would finish
		// it; the home pod then goes, before its grace period is over.
		g.Expect(eu.Client.Delete(ctx, r, client.GracePeriodSeconds(0))).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(graceful), &corev1.Pod{}))
		}).Should(BeTrue(), "the home pod goes once the remote one is gone")
	})

	t.Run("a remote pod the provider does not finish: the home pod goes after its grace period", func(t *testing.T) {
		g := newG(t)
		stuck := boundPod(ns, "stuck")
		g.Expect(home.Client.Create(ctx, stuck)).To(Succeed())
		// A finalizer on the provider holds the remote pod Terminating.
		g.Eventually(func(g Gomega) {
			r := remotePod(g, twin, "stuck")
			r.Finalizers = append(r.Finalizers, "test.stretch.dev/hold")
			g.Expect(eu.Client.Update(ctx, r)).To(Succeed())
		}).Should(Succeed())
		g.Expect(home.Client.Delete(ctx, stuck, client.GracePeriodSeconds(2))).To(Succeed())
		g.Eventually(func(g Gomega) {
			g.Expect(remotePod(g, twin, "stuck").DeletionTimestamp).NotTo(BeNil())
		}).Should(Succeed(), "the remote pod is deleted")
		g.Eventually(func() bool {
			return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(stuck), &corev1.Pod{}))
		}).Should(BeTrue(), "the home pod is gone after its grace period")
		edit(t, eu.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "stuck"}}, func(p *corev1.Pod) { p.Finalizers = nil })
	})

	t.Run("deleting the home pod deletes the remote pod, then the home pod", func(t *testing.T) {
		g := newG(t)
		g.Expect(home.Client.Delete(ctx, pod)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "web"}, &corev1.Pod{}))
		}).Should(BeTrue())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(pod), &corev1.Pod{}))
		}).Should(BeTrue())
	})
}

func TestPodWaitsForItsTwin(t *testing.T) {
	g := newG(t)
	fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "later"
	g.Expect(home.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	pod := boundPod(ns, "early")
	pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", nil
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	g.Expect(home.Client.Create(ctx, pod)).To(Succeed())

	g.Eventually(func(g Gomega) []string { return reasons(g, ns, "early") }).Should(ContainElement(virtualkubelet.WaitingForTwinReason))
	got := &corev1.Pod{}
	g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(pod), got)).To(Succeed())
	g.Expect(got.Status.Phase).NotTo(Equal(corev1.PodFailed))

	// One deleted before there is a twin has nothing remote to wait for.
	gone := boundPod(ns, "gone-early")
	gone.Spec.ServiceAccountName, gone.Spec.Volumes = "", nil
	g.Expect(home.Client.Create(ctx, gone)).To(Succeed())
	g.Expect(home.Client.Delete(ctx, gone)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(gone), &corev1.Pod{}))
	}).Should(BeTrue(), "a Terminating pod without a twin is deleted")

	twin := offload(t, g, ns)
	g.Eventually(func(g Gomega) { remotePod(g, twin, "early") }).Should(Succeed())
}

// gauge reads a gauge of the home side's virtual kubelet metrics by kind.
func gauge(g Gomega, st *fleet.Stretch, name, kind string) float64 {
	families, err := st.Metrics.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "kind") == kind {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// With --api-server-url, the containers of an offloaded pod reach the home
// API server as rest.InClusterConfig does (KUBERNETES_SERVICE_HOST and
// _PORT, the mounted token and CA), and are who the token says they are
// there; the remote pod, once created, is not written again for it.
func TestPodsReachTheHomeAPIServer(t *testing.T) {
	g := newG(t)
	u, err := url.Parse(home.Config.Host)
	g.Expect(err).NotTo(HaveOccurred())
	apiServerURL := "https://" + u.Host
	fleet.RunWith(t, home, homeID, []fleet.Provider{{Server: eu}}, fleet.Options{APIServerURL: apiServerURL})

	ns := "inside"
	twin := offload(t, g, ns)
	g.Expect(home.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "builder"}})).To(Succeed())
	// What kube-controller-manager publishes in every namespace: the CA of
	// the home API server.
	g.Expect(home.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "kube-root-ca.crt"},
		Data: map[string]string{"ca.crt": string(home.Config.CAData)}})).To(Succeed())

	pod := boundPod(ns, "client")
	pod.Spec.InitContainers = []corev1.Container{{Name: "wait", Image: "busybox"}}
	pod.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "KUBERNETES_SERVICE_PORT_HTTPS", Value: "8443"}}
	g.Expect(home.Client.Create(ctx, pod)).To(Succeed())

	var r *corev1.Pod
	g.Eventually(func(g Gomega) { r = remotePod(g, twin, "client") }).Should(Succeed())
	env := func(c corev1.Container) map[string]string {
		m := map[string]string{}
		for _, e := range c.Env {
			m[e.Name] = e.Value
		}
		return m
	}
	host, port := u.Hostname(), u.Port()
	g.Expect(env(r.Spec.InitContainers[0])).To(Equal(map[string]string{
		"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PORT_HTTPS": port,
	}), "init containers too")
	g.Expect(env(r.Spec.Containers[0])).To(Equal(map[string]string{
		"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, "KUBERNETES_SERVICE_PORT_HTTPS": "8443",
	}), "the container's own value stays")

	// What rest.InClusterConfig builds in that container, from its env and
	// the token Secret its projected volume reads.
	s := &corev1.Secret{}
	g.Expect(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: r.Spec.Volumes[0].Projected.Sources[0].Secret.Name}, s)).To(Succeed())
	c := env(r.Spec.Containers[0])
	inCluster := &rest.Config{
		Host:            "https://" + net.JoinHostPort(c["KUBERNETES_SERVICE_HOST"], c["KUBERNETES_SERVICE_PORT"]),
		BearerToken:     string(s.Data[virtualkubelet.TokenKey]),
		TLSClientConfig: rest.TLSClientConfig{CAData: s.Data[virtualkubelet.CACertKey]},
	}
	cs, err := kubernetes.NewForConfig(inCluster)
	g.Expect(err).NotTo(HaveOccurred())
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	g.Expect(err).NotTo(HaveOccurred(), "the offloaded pod's in-cluster client reaches the home API server")
	g.Expect(review.Status.UserInfo.Username).To(Equal("system:serviceaccount:" + ns + ":builder"))

	// A sync of the pod (here for a status change) finds the remote pod as
	// it wants it, env included: no write.
	before, err := testenv.APIWrites(ctx, eu.Config)
	g.Expect(err).NotTo(HaveOccurred())
	r = remotePod(g, twin, "client")
	r.Status.Phase, r.Status.PodIP = corev1.PodRunning, "10.20.0.9"
	g.Expect(eu.Client.Status().Update(ctx, r)).To(Succeed())
	g.Eventually(func(g Gomega) string {
		got := &corev1.Pod{}
		g.Expect(home.Client.Get(ctx, client.ObjectKeyFromObject(pod), got)).To(Succeed())
		return got.Status.PodIP
	}).Should(Equal("10.20.0.9"))
	g.Consistently(func(g Gomega) []string {
		after, err := testenv.APIWrites(ctx, eu.Config)
		g.Expect(err).NotTo(HaveOccurred())
		var podWrites []string // refused ones too: the spec's env cannot change
		for w := range after.Since(before) {
			if (strings.HasPrefix(w, "PUT pods") || strings.HasPrefix(w, "PATCH pods")) && !strings.Contains(w, "pods/status") {
				podWrites = append(podWrites, w)
			}
		}
		return podWrites
	}).WithTimeout(2*time.Second).Should(BeEmpty(), "the remote pod is not updated")

	// The home API server is known: no warning.
	g.Expect(reasons(g, ns, "client")).To(ContainElement(virtualkubelet.OffloadedReason))
	g.Expect(reasons(g, ns, "client")).NotTo(ContainElement(virtualkubelet.HomeAPIServerUnknownReason))
}

// counter reads a counter of the home side's virtual kubelet metrics by
// the value of one label.
func counter(g Gomega, st *fleet.Stretch, name, labelName, value string) float64 {
	families, err := st.Metrics.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, labelName) == value {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// A pod the provider refuses for good (here its Pod Security level) says
// why at home, stays Pending and is not tried again in a loop; a change
// that may lift the refusal is tried at once.
func TestPodsTheProviderRefuses(t *testing.T) {
	g := newG(t)
	// Tried again only when something changes: a retry seen below is the
	// change's, not a timer's.
	virtualkubelet.SetRefusalRetry(t, time.Hour, time.Hour, 0)
	st := fleet.Run(t, home, homeID, []fleet.Provider{{Server: eu}})
	ns := "guarded"
	twin := offload(t, g, ns)
	// As the provider's admin, or its policy controller (which may have
	// done it already), would.
	const enforce = "pod-security.kubernetes.io/enforce"
	edit(t, eu.Client, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: twin}}, func(n *corev1.Namespace) { n.Labels[enforce] = "baseline" })

	pod := func(name string, privileged bool) *corev1.Pod {
		p := boundPod(ns, name)
		p.Spec.ServiceAccountName, p.Spec.Volumes = "", nil
		if privileged {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		}
		return p
	}
	condition := func(g Gomega, name string) *corev1.PodCondition {
		got := &corev1.Pod{}
		g.Expect(home.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, got)).To(Succeed())
		g.Expect(got.Status.Phase).To(Equal(corev1.PodPending), "never failed: the provider's admin may lift the refusal")
		for _, c := range got.Status.Conditions {
			if c.Type == offloadingv1alpha1.PodOffloadedCondition {
				return &c
			}
		}
		return nil
	}
	refusedCreates := func(g Gomega, since testenv.Writes) int64 {
		now, err := testenv.APIWrites(ctx, eu.Config)
		g.Expect(err).NotTo(HaveOccurred())
		return now.Since(since)["POST pods (403)"]
	}
	before, err := testenv.APIWrites(ctx, eu.Config)
	g.Expect(err).NotTo(HaveOccurred())
	homeBefore, err := testenv.APIWrites(ctx, home.Config)
	g.Expect(err).NotTo(HaveOccurred())

	priv := pod("priv", true)
	g.Expect(home.Client.Create(ctx, priv)).To(Succeed())

	t.Run("the home pod says why, with the provider's words, and stays Pending", func(t *testing.T) {
		g := newG(t)
		g.Eventually(func(g Gomega) {
			c := condition(g, "priv")
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(corev1.ConditionFalse))
			g.Expect(c.Reason).To(Equal(offloadingv1alpha1.RefusedByProviderReason))
			g.Expect(c.Message).To(HavePrefix(`provider eu refused the pod: pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "app" must not set securityContext.privileged=true); change the pod`))
		}).Should(Succeed())
		g.Eventually(func(g Gomega) []int32 { return counts(g, ns, "priv", offloadingv1alpha1.RefusedByProviderReason) }).Should(Equal([]int32{1}))
		g.Expect(reasons(g, ns, "priv")).NotTo(ContainElement(virtualkubelet.OffloadFailedReason))
		g.Expect(counter(g, st, "stretch_virtualkubelet_pod_refusals_total", "reason", "Forbidden")).To(BeNumerically("==", 1))
	})

	t.Run("it is not tried again in a loop, nor is its status written again", func(t *testing.T) {
		g := newG(t)
		g.Consistently(func(g Gomega) {
			g.Expect(refusedCreates(g, before)).To(BeEquivalentTo(1))
			g.Expect(counts(g, ns, "priv", offloadingv1alpha1.RefusedByProviderReason)).To(Equal([]int32{1}))
			now, err := testenv.APIWrites(ctx, home.Config)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(now.Since(homeBefore)["PATCH pods/status"]).To(BeNumerically("<=", 2), "home status writes: %v", now.Since(homeBefore))
		}).WithTimeout(3 * time.Second).Should(Succeed())
		g.Expect(apierrors.IsNotFound(eu.Client.Get(ctx, client.ObjectKey{Namespace: twin, Name: "priv"}, &corev1.Pod{}))).To(BeTrue())
	})

	t.Run("a change of the pod is tried at once; the same refusal is not said again", func(t *testing.T) {
		g := newG(t)
		edit(t, home.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "priv"}}, func(p *corev1.Pod) { p.Labels["tier"] = "front" })
		g.Eventually(func(g Gomega) int64 { return refusedCreates(g, before) }).Should(BeEquivalentTo(2))
		g.Consistently(func(g Gomega) {
			g.Expect(refusedCreates(g, before)).To(BeEquivalentTo(2))
			g.Expect(counts(g, ns, "priv", offloadingv1alpha1.RefusedByProviderReason)).To(Equal([]int32{1}))
			g.Expect(condition(g, "priv")).To(HaveField("Reason", offloadingv1alpha1.RefusedByProviderReason))
		}).WithTimeout(2 * time.Second).Should(Succeed())
	})

	t.Run("a pod recreated to meet the policy is created", func(t *testing.T) {
		g := newG(t)
		fixed := pod("fixed", true)
		g.Expect(home.Client.Create(ctx, fixed)).To(Succeed())
		g.Eventually(func(g Gomega) *corev1.PodCondition { return condition(g, "fixed") }).Should(HaveField("Reason", offloadingv1alpha1.RefusedByProviderReason))
		g.Expect(home.Client.Delete(ctx, fixed)).To(Succeed())
		g.Eventually(func() bool {
			return apierrors.IsNotFound(home.Client.Get(ctx, client.ObjectKeyFromObject(fixed), &corev1.Pod{}))
		}).Should(BeTrue())
		g.Expect(home.Client.Create(ctx, pod("fixed", false))).To(Succeed())
		g.Eventually(func(g Gomega) { remotePod(g, twin, "fixed") }).Should(Succeed())
		g.Expect(condition(g, "fixed")).To(BeNil())
	})

	t.Run("a pod a quota refused is tried again once a remote pod of ours goes; the condition goes", func(t *testing.T) {
		g := newG(t)
		// A quota of the provider's admin, full with "fixed" (no quota
		// controller runs here: its status is written as it would).
		quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Namespace: twin, Name: "pods"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}}
		g.Expect(eu.Client.Create(ctx, quota)).To(Succeed())
		quota.Status = corev1.ResourceQuotaStatus{Hard: quota.Spec.Hard, Used: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1")}}
		g.Expect(eu.Client.Status().Update(ctx, quota)).To(Succeed())

		g.Expect(home.Client.Create(ctx, pod("queued", false))).To(Succeed())
		g.Eventually(func(g Gomega) {
			c := condition(g, "queued")
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Reason).To(Equal(offloadingv1alpha1.RefusedByProviderReason))
			g.Expect(c.Message).To(HavePrefix(`provider eu refused the pod: pods "queued" is forbidden: `))
			g.Expect(c.Message).To(ContainSubstring("quota: pods"))
		}).Should(Succeed())

		// The admin lifts it; the quota admission's cache has it once a pod
		// (not stored: a dry run) is admitted.
		g.Expect(eu.Client.Delete(ctx, quota)).To(Succeed())
		g.Eventually(func() error {
			probe := pod("probe", false)
			probe.Namespace, probe.Spec.NodeName = twin, ""
			probe.Labels = map[string]string{wellknown.OriginClusterIDLabel: homeID}
			return eu.Client.Create(ctx, probe, client.DryRunAll)
		}).Should(Succeed())
		// Nothing else retries it this early: what frees a quota, a remote
		// pod of ours going, does.
		g.Expect(home.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "fixed"}})).To(Succeed())
		g.Eventually(func(g Gomega) { remotePod(g, twin, "queued") }).Should(Succeed())
		g.Eventually(func(g Gomega) *corev1.PodCondition { return condition(g, "queued") }).Should(BeNil())
		g.Expect(reasons(g, ns, "queued")).To(ContainElement(virtualkubelet.OffloadedReason))
		g.Expect(counts(g, ns, "queued", offloadingv1alpha1.RefusedByProviderReason)).To(Equal([]int32{1}))
		g.Expect(counts(g, ns, "priv", offloadingv1alpha1.RefusedByProviderReason)).To(Equal([]int32{1}), "still refused, tried again, not said again")
	})
}

// observations reads how many times a stage of
// stretch_virtualkubelet_pod_offload_seconds was observed.
func observations(g Gomega, st *fleet.Stretch, stage string) uint64 {
	families, err := st.Metrics.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	for _, f := range families {
		if f.GetName() != "stretch_virtualkubelet_pod_offload_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			if label(m, "stage") == stage {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// The metrics of a virtual kubelet, from a home cluster of their own, so
// that nothing the other tests left counts: a pod offloaded (its stages),
// the twin and the objects reflected into it, a pod the provider refuses.
func TestMetrics(t *testing.T) {
	g := newG(t)
	const metricsHomeID = "5a1e9c3b-0d7f-4e2a-8b6c-1f9d3e7a2c40"
	servers, err := testenv.StartAPIServers(t.TempDir(), "metrics-home")
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() {
		if err := testenv.StopAPIServers(servers); err != nil {
			t.Error(err)
		}
	})
	mh := servers[0]
	// Tried again only when something changes: each refused attempt below
	// is counted once.
	virtualkubelet.SetRefusalRetry(t, time.Hour, time.Hour, 0)
	st := fleet.Run(t, mh, metricsHomeID, []fleet.Provider{{Server: eu}})
	ns := "metered"
	twin := offloadFrom(t, g, mh, metricsHomeID, ns)
	peering := eu.Name

	t.Run("a pod offloaded is observed at its stages; its twin and reflected objects are counted", func(t *testing.T) {
		g := newG(t)
		g.Expect(mh.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}, Data: map[string]string{"color": "blue"}})).To(Succeed())
		g.Expect(mh.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "db"}, StringData: map[string]string{"password": "s3cret"}})).To(Succeed())
		g.Expect(mh.Client.Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}})).To(Succeed())

		// Bound as the scheduler binds it: the binding's PodScheduled
		// condition is when the stages are measured from.
		pod := boundPod(ns, "web")
		pod.Spec.NodeName, pod.Spec.ServiceAccountName, pod.Spec.Volumes = "", "", nil
		g.Expect(mh.Client.Create(ctx, pod)).To(Succeed())
		g.Expect(mh.Client.SubResource("binding").Create(ctx, pod, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name},
			Target: corev1.ObjectReference{Kind: "Node", Name: peeringv1alpha1.VirtualNodeName(eu.Name)}})).To(Succeed())
		g.Eventually(func(g Gomega) uint64 { return observations(g, st, "remote-created") }).Should(BeEquivalentTo(1))
		g.Expect(observations(g, st, "running")).To(BeZero())

		r := remotePod(g, twin, "web")
		r.Status = corev1.PodStatus{Phase: corev1.PodRunning}
		g.Expect(eu.Client.Status().Update(ctx, r)).To(Succeed())
		g.Eventually(func(g Gomega) uint64 { return observations(g, st, "running") }).Should(BeEquivalentTo(1))

		g.Eventually(func(g Gomega) float64 { return gauge(g, st, "stretch_virtualkubelet_twin_namespaces", "") }).Should(BeEquivalentTo(1))
		for _, kind := range []string{virtualkubelet.KindConfigMap, virtualkubelet.KindSecret, virtualkubelet.KindService} {
			g.Eventually(func(g Gomega) float64 { return gauge(g, st, "stretch_virtualkubelet_reflected_objects", kind) }).Should(BeEquivalentTo(1), kind)
		}
		// Every series is the peering's.
		families, err := st.Metrics.Gather()
		g.Expect(err).NotTo(HaveOccurred())
		for _, f := range families {
			for _, m := range f.GetMetric() {
				g.Expect(label(m, "peering")).To(Equal(peering), f.GetName())
			}
		}
	})

	t.Run("a pod the provider refuses moves the refusals and the errors", func(t *testing.T) {
		g := newG(t)
		// The provider's twins are at Pod Security level baseline.
		twinNS := &corev1.Namespace{}
		g.Expect(eu.Client.Get(ctx, client.ObjectKey{Name: twin}, twinNS)).To(Succeed())
		g.Expect(twinNS.Labels).To(HaveKeyWithValue("pod-security.kubernetes.io/enforce", "baseline"))
		errorsBefore := counter(g, st, "stretch_virtualkubelet_errors_total", "operation", "create-pod")
		g.Expect(counter(g, st, "stretch_virtualkubelet_pod_refusals_total", "reason", "Forbidden")).To(BeZero())

		priv := boundPod(ns, "priv")
		priv.Spec.ServiceAccountName, priv.Spec.Volumes = "", nil
		priv.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{Privileged: ptr.To(true)}
		g.Expect(mh.Client.Create(ctx, priv)).To(Succeed())
		g.Eventually(func(g Gomega) float64 {
			return counter(g, st, "stretch_virtualkubelet_pod_refusals_total", "reason", "Forbidden")
		}).Should(BeEquivalentTo(1))
		g.Expect(counter(g, st, "stretch_virtualkubelet_errors_total", "operation", "create-pod")).To(Equal(errorsBefore + 1))
		g.Expect(observations(g, st, "remote-created")).To(BeEquivalentTo(1), "a refused pod is not observed")
	})
}
