// Package status reports what Stretch sees on one cluster: its identity, its
// peers (providers) and their virtual nodes, its offloaded namespaces and the
// twin namespaces it hosts for home clusters.
package status

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/controller-runtime/pkg/client"

	offloadingv1alpha1 "stretch.dev/stretch/api/offloading/v1alpha1"
	peeringv1alpha1 "stretch.dev/stretch/api/peering/v1alpha1"
	"stretch.dev/stretch/api/wellknown"
	"stretch.dev/stretch/internal/apply"
	"stretch.dev/stretch/internal/cli/output"
	"stretch.dev/stretch/internal/identity"
	"stretch.dev/stretch/internal/peering"
)

// Report is the status of one cluster; -o yaml|json prints it as is.
type Report struct {
	Cluster             Cluster              `json:"cluster"`
	Peers               []Peer               `json:"peers"`
	VirtualNodes        []VirtualNode        `json:"virtualNodes"`
	OffloadedNamespaces []OffloadedNamespace `json:"offloadedNamespaces"`
	HostedTwins         []HostedTwin         `json:"hostedTwins"`
}

// Cluster is the cluster's identity.
type Cluster struct {
	Name      string            `json:"name"`
	ClusterID string            `json:"clusterID"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Peer is one RemoteCluster: a provider this cluster peers with.
type Peer struct {
	Name              string                 `json:"name"`
	ClusterID         string                 `json:"clusterID"`
	APIReachable      metav1.ConditionStatus `json:"apiReachable"`
	Authenticated     metav1.ConditionStatus `json:"authenticated"`
	VirtualNodeReady  metav1.ConditionStatus `json:"virtualNodeReady"`
	LastHeartbeatTime *metav1.Time           `json:"lastHeartbeatTime,omitempty"`
	Cordoned          bool                   `json:"cordoned,omitempty"`
	Deleting          bool                   `json:"deleting,omitempty"`
	// Reason and Message are those of the first condition that is not True.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Policy is the provider's TenantPolicy for this cluster, as last read:
	// its limits, what this cluster uses against them, its Pod Security
	// level and priority classes. Unset when the provider has none.
	Policy *peeringv1alpha1.ProviderPolicy `json:"policy,omitempty"`
}

// VirtualNode is a node that stands for a provider.
type VirtualNode struct {
	Name          string                 `json:"name"`
	RemoteCluster string                 `json:"remoteCluster"`
	Ready         corev1.ConditionStatus `json:"ready"`
	Labels        map[string]string      `json:"labels,omitempty"`
}

// OffloadedNamespace is one NamespaceOffloading.
type OffloadedNamespace struct {
	Namespace                string                                      `json:"namespace"`
	Phase                    offloadingv1alpha1.OffloadingPhase          `json:"phase"`
	RemoteNamespaceName      string                                      `json:"remoteNamespaceName,omitempty"`
	PodOffloadingStrategy    offloadingv1alpha1.PodOffloadingStrategy    `json:"podOffloadingStrategy,omitempty"`
	NamespaceMappingStrategy offloadingv1alpha1.NamespaceMappingStrategy `json:"namespaceMappingStrategy,omitempty"`
	Providers                []ProviderTwin                              `json:"providers,omitempty"`
}

// ProviderTwin is the state of one provider's twin of an offloaded namespace.
type ProviderTwin struct {
	Name     string                 `json:"name"`
	Selected metav1.ConditionStatus `json:"selected"`
	Ready    metav1.ConditionStatus `json:"ready"`
	Reason   string                 `json:"reason,omitempty"`
	Message  string                 `json:"message,omitempty"`
}

// HostedTwin is one RemoteNamespace: a twin this cluster hosts for a home cluster.
type HostedTwin struct {
	TenantNamespace string                               `json:"tenantNamespace"`
	HomeClusterID   string                               `json:"homeClusterID"`
	HomeNamespace   string                               `json:"homeNamespace"`
	Twin            string                               `json:"twin"`
	Phase           peeringv1alpha1.RemoteNamespacePhase `json:"phase,omitempty"`
	Reason          string                               `json:"reason,omitempty"`
	Message         string                               `json:"message,omitempty"`
}

// Collect reads the status of the cluster that c reaches.
func Collect(ctx context.Context, c client.Reader) (*Report, error) {
	self, err := identity.Load(ctx, c)
	if err != nil {
		return nil, err
	}
	r := &Report{Cluster: Cluster{Name: self.Name, ClusterID: self.ID, Labels: self.Labels}}

	peers := &peeringv1alpha1.RemoteClusterList{}
	if err := apply.List(ctx, c, peers); err != nil {
		return nil, err
	}
	for _, rc := range peers.Items {
		conds := rc.Status.Conditions
		p := Peer{
			Name:              rc.Name,
			ClusterID:         rc.Spec.ClusterID,
			APIReachable:      peering.ConditionStatus(conds, peeringv1alpha1.APIReachableCondition),
			Authenticated:     peering.ConditionStatus(conds, peeringv1alpha1.AuthenticatedCondition),
			VirtualNodeReady:  peering.ConditionStatus(conds, peeringv1alpha1.VirtualNodeReadyCondition),
			LastHeartbeatTime: rc.Status.LastHeartbeatTime,
			Cordoned:          rc.Spec.Cordoned,
			Deleting:          !rc.DeletionTimestamp.IsZero(),
			Policy:            rc.Status.Policy,
		}
		if problem := peering.Problem(conds); problem != nil {
			p.Reason, p.Message = problem.Reason, problem.Message
		}
		r.Peers = append(r.Peers, p)
	}

	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes, client.MatchingLabels{wellknown.VirtualNodeTypeLabel: wellknown.VirtualNodeTypeValue}); err != nil {
		return nil, fmt.Errorf("listing virtual nodes: %w", err)
	}
	for _, n := range nodes.Items {
		vn := VirtualNode{Name: n.Name, RemoteCluster: n.Labels[wellknown.RemoteClusterNameLabel], Ready: corev1.ConditionUnknown, Labels: n.Labels}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				vn.Ready = cond.Status
			}
		}
		r.VirtualNodes = append(r.VirtualNodes, vn)
	}

	offloadings := &offloadingv1alpha1.NamespaceOffloadingList{}
	if err := apply.List(ctx, c, offloadings); err != nil {
		return nil, err
	}
	for _, o := range offloadings.Items {
		if o.Name != wellknown.NamespaceOffloadingName {
			continue // not reconciled: 'stretchctl diagnose' explains it
		}
		ns := OffloadedNamespace{Namespace: o.Namespace, Phase: o.Status.OffloadingPhase, RemoteNamespaceName: o.Status.RemoteNamespaceName,
			PodOffloadingStrategy: o.Spec.PodOffloadingStrategy, NamespaceMappingStrategy: o.Spec.NamespaceMappingStrategy}
		for _, name := range o.Status.Providers() {
			conds := o.Status.RemoteNamespacesConditions[name]
			pt := ProviderTwin{
				Name:     name,
				Selected: peering.ConditionStatus(conds, offloadingv1alpha1.OffloadingRequiredCondition),
				Ready:    peering.ConditionStatus(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition),
			}
			if ready := meta.FindStatusCondition(conds, offloadingv1alpha1.RemoteNamespaceReadyCondition); ready != nil {
				pt.Reason, pt.Message = ready.Reason, ready.Message
			}
			ns.Providers = append(ns.Providers, pt)
		}
		r.OffloadedNamespaces = append(r.OffloadedNamespaces, ns)
	}

	twins := &peeringv1alpha1.RemoteNamespaceList{}
	if err := apply.List(ctx, c, twins); err != nil {
		return nil, err
	}
	for _, rn := range twins.Items {
		r.HostedTwins = append(r.HostedTwins, HostedTwin{
			TenantNamespace: rn.Namespace,
			HomeClusterID:   rn.Spec.HomeClusterID,
			HomeNamespace:   rn.Spec.HomeNamespace,
			Twin:            rn.Spec.RemoteNamespaceName,
			Phase:           rn.Status.Phase,
			Reason:          rn.Status.Reason,
			Message:         rn.Status.Message,
		})
	}
	r.sort()
	return r, nil
}

func (r *Report) sort() {
	slices.SortFunc(r.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.VirtualNodes, func(a, b VirtualNode) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(r.OffloadedNamespaces, func(a, b OffloadedNamespace) int { return strings.Compare(a.Namespace, b.Namespace) })
	slices.SortFunc(r.HostedTwins, func(a, b HostedTwin) int {
		return strings.Compare(a.TenantNamespace+"/"+a.Twin, b.TenantNamespace+"/"+b.Twin)
	})
}

// virtualNodeLabels are on every virtual node and say nothing the other
// columns do not: the table leaves them out (-o yaml shows them).
var virtualNodeLabels = []string{
	wellknown.VirtualNodeTypeLabel,
	wellknown.RemoteClusterIDLabel,
	wellknown.RemoteClusterNameLabel,
	corev1.LabelHostname,
	corev1.LabelOSStable,
	corev1.LabelArchStable,
}

// Print writes the report as tables; now is the time ages are measured from.
// wide adds columns, as kubectl's -o wide: the providers' policies (usage
// against limits, Pod Security level), every label of the virtual nodes,
// the namespaces' strategies and the providers' messages.
func (r *Report) Print(w io.Writer, now time.Time, wide bool) error {
	labels := identity.FormatLabels(r.Cluster.Labels)
	if labels == "" {
		labels = output.None
	}
	fmt.Fprintf(w, "Cluster %q, ID %s, labels %s\n", r.Cluster.Name, r.Cluster.ClusterID, labels)

	peerHeaders := []string{"name", "cluster id", "reachable", "authenticated", "node ready", "last heartbeat"}
	if wide {
		peerHeaders = append(peerHeaders, "pod security", "policy")
	}
	peers := output.NewTable(append(peerHeaders, "message")...)
	for _, p := range r.Peers {
		heartbeat := ""
		if p.LastHeartbeatTime != nil {
			heartbeat = duration.HumanDuration(now.Sub(p.LastHeartbeatTime.Time)) + " ago"
		}
		row := []string{p.Name, p.ClusterID, string(p.APIReachable), string(p.Authenticated), string(p.VirtualNodeReady), heartbeat}
		if wide {
			security := ""
			if p.Policy != nil {
				security = p.Policy.PodSecurity
			}
			row = append(row, security, policyUsage(p.Policy))
		}
		peers.AddRow(append(row, p.message())...)
	}

	nodes := output.NewTable("name", "remote cluster", "ready", "labels")
	for _, n := range r.VirtualNodes {
		labels := map[string]string{}
		for k, v := range n.Labels {
			if wide || !slices.Contains(virtualNodeLabels, k) {
				labels[k] = v
			}
		}
		nodes.AddRow(n.Name, n.RemoteCluster, string(n.Ready), identity.FormatLabels(labels))
	}

	offloadedHeaders := []string{"namespace", "phase", "remote namespace", "providers"}
	hostedHeaders := []string{"tenant", "home cluster id", "home namespace", "twin", "phase", "reason"}
	if wide {
		offloadedHeaders = append(offloadedHeaders, "pod strategy", "mapping", "messages")
		hostedHeaders = append(hostedHeaders, "message")
	}
	offloaded := output.NewTable(offloadedHeaders...)
	for _, ns := range r.OffloadedNamespaces {
		providers := make([]string, len(ns.Providers))
		var messages []string
		for i, p := range ns.Providers {
			providers[i] = p.Name + "=" + p.state()
			if p.Ready != metav1.ConditionTrue && p.Selected != metav1.ConditionFalse && p.Message != "" {
				messages = append(messages, p.Name+": "+p.Message)
			}
		}
		row := []string{ns.Namespace, string(ns.Phase), ns.RemoteNamespaceName, strings.Join(providers, ",")}
		if wide {
			row = append(row, string(ns.PodOffloadingStrategy), string(ns.NamespaceMappingStrategy), strings.Join(messages, "; "))
		}
		offloaded.AddRow(row...)
	}

	hosted := output.NewTable(hostedHeaders...)
	for _, t := range r.HostedTwins {
		row := []string{t.TenantNamespace, t.HomeClusterID, t.HomeNamespace, t.Twin, string(t.Phase), t.Reason}
		if wide {
			row = append(row, t.Message)
		}
		hosted.AddRow(row...)
	}

	sections := []struct {
		title string
		table *output.Table
	}{
		{"Peers (RemoteClusters)", peers},
		{"Virtual nodes", nodes},
		{"Offloaded namespaces (NamespaceOffloadings)", offloaded},
		{"Twin namespaces hosted for home clusters (RemoteNamespaces)", hosted},
	}
	for _, s := range sections {
		fmt.Fprintf(w, "\n%s:\n", s.title)
		if s.table.Len() == 0 {
			fmt.Fprintln(w, output.None)
			continue
		}
		if err := s.table.Write(w); err != nil {
			return err
		}
	}
	return nil
}

// policyUsage is, for each resource the policy limits, what this cluster
// uses against the limit: "cpu 1500m/4, pods 3/10, nvidia.com/gpu 0/1";
// "no limits" for a policy without any, "" without a policy.
func policyUsage(p *peeringv1alpha1.ProviderPolicy) string {
	if p == nil {
		return ""
	}
	if len(p.Limits) == 0 {
		return "no limits"
	}
	parts := make([]string, 0, len(p.Limits))
	for _, name := range limitOrder(p.Limits) {
		used, limit := p.Used[name], p.Limits[name]
		parts = append(parts, fmt.Sprintf("%s %s/%s", name, used.String(), limit.String()))
	}
	return strings.Join(parts, ", ")
}

// limitOrder sorts resource names: cpu, memory, ephemeral-storage, pods,
// then the others (extended resources) by name.
func limitOrder(l corev1.ResourceList) []corev1.ResourceName {
	first := []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage, corev1.ResourcePods}
	rank := func(n corev1.ResourceName) int {
		if i := slices.Index(first, n); i >= 0 {
			return i
		}
		return len(first)
	}
	names := slices.Collect(maps.Keys(l))
	slices.SortFunc(names, func(a, b corev1.ResourceName) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(string(a), string(b)))
	})
	return names
}

// message says why a peer is not healthy, or what else matters about it.
func (p Peer) message() string {
	switch {
	case p.Deleting:
		return "Terminating: being unpeered"
	case p.Reason != "":
		return p.Reason + ": " + p.Message
	case p.Cordoned:
		return "Cordoned: no new pods are placed on its virtual node"
	}
	return ""
}

// state is the provider's twin state in one word or two: Ready, NotSelected,
// or the Ready condition's reason.
func (p ProviderTwin) state() string {
	switch {
	case p.Selected == metav1.ConditionFalse:
		return "NotSelected"
	case p.Ready == metav1.ConditionTrue:
		return "Ready"
	case p.Reason != "":
		return p.Reason
	}
	return string(p.Ready)
}
