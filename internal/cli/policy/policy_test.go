package policy

import (
	"bytes"
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/tenancy"
	"stretch.dev/stretch/internal/testenv"
)

var cluster *testenv.APIServer

func TestMain(m *testing.M) {
	testenv.Main(m, func(s []*testenv.APIServer) { cluster = s[0] }, "provider")
}

const (
	homeA = "0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a"
	homeB = "7d3c2b1a-5f6d-4e3c-8b1a-0b8e9a5c3d1f"
)

func TestParse(t *testing.T) {
	q := resource.MustParse
	t.Run("limits", func(t *testing.T) {
		g := NewWithT(t)
		l, err := ParseLimits("cpu=8, memory=16Gi,pods=50,nvidia.com/gpu=2,ephemeral-storage=100Gi,hugepages-2Mi=1Gi")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(equality.Semantic.DeepEqual(l, corev1.ResourceList{"cpu": q("8"), "memory": q("16Gi"), "pods": q("50"), "nvidia.com/gpu": q("2"),
			"ephemeral-storage": q("100Gi"), "hugepages-2Mi": q("1Gi")})).To(BeTrue(), "%v", l)
		l, err = ParseLimits("")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(l).To(BeEmpty())
	})
	for _, tt := range []struct{ in, wantErr string }{
		{"cpu", `"cpu" is not NAME=QUANTITY, e.g. cpu=8`},
		{"cpu=eight", "cpu=eight is not a quantity"},
		{"gpu=1", `"gpu" is not a resource a limit can name: use cpu, memory, ephemeral-storage, pods, hugepages-<size>, or an extended resource DOMAIN/NAME such as nvidia.com/gpu`},
		{"requests.cpu=1", `"requests.cpu" is not a resource a limit can name`},
		{"cpu=1,cpu=2", "names cpu twice"},
		{"memory=-1Gi", "is negative"},
		{"pods=1.5", "pods=1.5 must be a whole number"},
		{"nvidia.com/gpu=500m", "must be a whole number"},
	} {
		t.Run("limits "+tt.in, func(t *testing.T) {
			_, err := ParseLimits(tt.in)
			NewWithT(t).Expect(err).To(MatchError(ContainSubstring(tt.wantErr)))
		})
	}
	t.Run("others", func(t *testing.T) {
		g := NewWithT(t)
		_, err := ParsePodSecurity("privileged")
		g.Expect(err).To(MatchError(`--pod-security "privileged": must be baseline (the default) or restricted`))
		l, err := ParsePodSecurity("restricted")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(l).To(Equal(peeringv1alpha1.PodSecurityRestricted))

		n, err := ParseTwinNamings("DefaultName, SelectedName,DefaultName")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(n).To(Equal([]peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin, peeringv1alpha1.SelectedNameTwin}))
		_, err = ParseTwinNamings("Default")
		g.Expect(err).To(MatchError(ContainSubstring(`"Default" must be one of DefaultName, EnforceSameName, SelectedName`)))

		p, err := ParsePriorityClasses("high,low")
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(p).To(Equal([]string{"high", "low"}))
		_, err = ParsePriorityClasses("High")
		g.Expect(err).To(MatchError(ContainSubstring(`"High" is not a PriorityClass name`)))

		_, err = ParseTwinNamePattern("team-(")
		g.Expect(err).To(MatchError(ContainSubstring(`--twin-name-pattern: twinNamePattern "team-(" is not a valid RE2 regular expression`)))
	})
}

// peered makes the tenant namespace of a home cluster, as 'stretchctl peer'
// does on the provider.
func peered(g Gomega, home string) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: peeringv1alpha1.TenantNamespace(home)}}
	g.ExpectWithOffset(1, client.IgnoreAlreadyExists(cluster.Client.Create(context.Background(), ns))).To(Succeed())
}

func get(g Gomega, home string) *peeringv1alpha1.TenantPolicy {
	p := &peeringv1alpha1.TenantPolicy{}
	g.ExpectWithOffset(1, cluster.Client.Get(context.Background(), client.ObjectKey{Namespace: peeringv1alpha1.TenantNamespace(home), Name: wellknown.TenantPolicyName}, p)).To(Succeed())
	return p
}

// TestSet: each 'set' changes the fields it is given and keeps the others.
func TestSet(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	c := cluster.Client
	peered(g, homeA)
	q := resource.MustParse
	var out bytes.Buffer

	limits := corev1.ResourceList{"cpu": q("8"), "memory": q("16Gi")}
	_, err := Set(ctx, c, homeA, Change{Limits: &limits, PodSecurity: ptr.To(peeringv1alpha1.PodSecurityRestricted)}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.String()).To(Equal("✓ TenantPolicy stretch-tenant-" + homeA + "/policy applied for home cluster " + homeA +
		": pod security restricted, limits cpu=8,memory=16Gi, priority classes <none>, twin namings <all>, twin name pattern <any>\n"))

	_, err = Set(ctx, c, homeA, Change{TwinNamings: &[]peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}, PriorityClasses: &[]string{"batch"}}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	p := get(g, homeA)
	g.Expect(p.Spec.PodSecurity).To(Equal(peeringv1alpha1.PodSecurityRestricted), "kept")
	g.Expect(equality.Semantic.DeepEqual(p.Spec.Limits, limits)).To(BeTrue(), "kept: %v", p.Spec.Limits)
	g.Expect(p.Spec.TwinNamings).To(Equal([]peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}))
	g.Expect(p.Spec.PriorityClasses).To(Equal([]string{"batch"}))

	// --limits replaces the limits; "" clears them; so does --twin-namings "".
	fewer := corev1.ResourceList{"pods": q("50")}
	_, err = Set(ctx, c, homeA, Change{Limits: &fewer}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(equality.Semantic.DeepEqual(get(g, homeA).Spec.Limits, fewer)).To(BeTrue(), "%v", get(g, homeA).Spec.Limits)
	out.Reset()
	_, err = Set(ctx, c, homeA, Change{Limits: &corev1.ResourceList{}, TwinNamings: &[]peeringv1alpha1.TwinNaming{}}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	p = get(g, homeA)
	g.Expect(p.Spec.Limits).To(BeEmpty())
	g.Expect(p.Spec.TwinNamings).To(BeEmpty())
	g.Expect(p.Spec.PriorityClasses).To(Equal([]string{"batch"}), "kept")
	g.Expect(out.String()).NotTo(ContainSubstring("Warning"))

	// A limit someone else set (kubectl edit) stays when stretchctl sets
	// others, and stretchctl says so.
	p.Spec.Limits = corev1.ResourceList{"nvidia.com/gpu": q("1")}
	g.Expect(c.Update(ctx, p, client.FieldOwner("kubectl-edit"))).To(Succeed())
	cpu := corev1.ResourceList{"cpu": q("2")}
	out.Reset()
	_, err = Set(ctx, c, homeA, Change{Limits: &cpu}, &out)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(out.String()).To(ContainSubstring("Warning: TenantPolicy stretch-tenant-" + homeA + "/policy keeps values set by another field manager besides stretchctl (it has pod security restricted, limits cpu=2,nvidia.com/gpu=1"))
	g.Expect(out.String()).To(ContainSubstring("'kubectl edit tenantpolicy -n stretch-tenant-" + homeA + " policy'"))
}

func TestUnknownHome(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	peered(g, homeA)
	peered(g, homeB)
	_, err := Set(ctx, cluster.Client, "home-eu", Change{}, &bytes.Buffer{})
	g.Expect(err).To(MatchError(`home cluster "home-eu" is not a cluster ID: a provider knows its home clusters by ID only ('stretchctl status' on the home cluster shows it); the home clusters peered with this provider are ` + homeA + ", " + homeB))
	const stranger = "11111111-2222-4333-8444-555555555555"
	_, err = Show(ctx, cluster.Client, stranger)
	g.Expect(err).To(MatchError(ContainSubstring("home cluster " + stranger + " has no tenant namespace stretch-tenant-" + stranger + " on this provider: it has not peered with it; peer it first")))
	g.Expect(err).To(MatchError(ContainSubstring("the home clusters peered with this provider are " + homeA)))
}

// TestShow prints each home cluster's policy and usage, as the controller
// reports it, and the defaults of one without a policy.
func TestShow(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	peered(g, homeA)
	peered(g, homeB)
	q := resource.MustParse
	limits := corev1.ResourceList{"cpu": q("8"), "memory": q("16Gi"), "pods": q("50"), "nvidia.com/gpu": q("2")}
	_, err := Set(ctx, cluster.Client, homeA, Change{Limits: &limits, PodSecurity: ptr.To(peeringv1alpha1.PodSecurityRestricted),
		PriorityClasses: &[]string{}, TwinNamings: &[]peeringv1alpha1.TwinNaming{peeringv1alpha1.DefaultNameTwin}, TwinNamePattern: ptr.To("")}, &bytes.Buffer{})
	g.Expect(err).NotTo(HaveOccurred())
	p := get(g, homeA)
	p.Status = peeringv1alpha1.TenantPolicyStatus{
		Used: corev1.ResourceList{"cpu": q("1100m"), "memory": q("192Mi"), "pods": q("3"), "nvidia.com/gpu": q("1")},
		Conditions: []metav1.Condition{{Type: tenancy.EnforcedCondition, Status: metav1.ConditionFalse, Reason: tenancy.TwinsOutsidePolicyReason,
			Message:            "1 of 2 twins were created before the policy forbade them and are kept with their workloads (not deleted): web (its naming is SelectedName and the policy allows only DefaultName)",
			LastTransitionTime: metav1.Now()}},
	}
	g.Expect(cluster.Client.Status().Update(ctx, p)).To(Succeed())

	report, err := Show(ctx, cluster.Client, "")
	g.Expect(err).NotTo(HaveOccurred())
	var out bytes.Buffer
	g.Expect(report.Print(&out)).To(Succeed())
	testenv.ExpectGolden(t, "show.golden", out.Bytes())

	report, err = Show(ctx, cluster.Client, homeB)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(report.Homes).To(HaveLen(1))
	g.Expect(report.Homes[0].Policy).To(BeFalse())
	g.Expect(report.Homes[0].PodSecurity).To(Equal(peeringv1alpha1.PodSecurityBaseline))
}
