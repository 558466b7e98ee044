// Package identity reads and creates a cluster's Stretch identity: an
// immutable cluster ID, a cluster name and the cluster labels given at install
// time, kept in the ConfigMap stretch-system/stretch-cluster-identity.
package identity

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strings"
	"sync"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"stretch.dev/stretch/api/wellknown"
)

const (
	clusterIDKey     = "clusterID"
	clusterNameKey   = "clusterName"
	clusterLabelsKey = "clusterLabels"
)

// Identity is what a cluster tells its peers about itself.
type Identity struct {
	// ID is a UUID generated once at the first install and never changed.
	ID string
	// Name is the cluster name given at install time.
	Name string
	// Labels are the cluster labels given at install time; they show on the
	// virtual node that stands for this cluster in its home clusters.
	Labels map[string]string
}

// Key is where the identity ConfigMap lives.
var Key = types.NamespacedName{Namespace: wellknown.SystemNamespace, Name: wellknown.IdentityConfigMapName}

// Load reads the identity of the cluster that c talks to.
func Load(ctx context.Context, c client.Reader) (Identity, error) {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, Key, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return Identity{}, fmt.Errorf("cluster identity ConfigMap %s not found: install Stretch on this cluster with 'stretchctl install --cluster-name NAME'", Key)
		}
		return Identity{}, fmt.Errorf("reading cluster identity ConfigMap %s: %w", Key, err)
	}
	return FromConfigMap(cm)
}

// FromConfigMap decodes and checks an identity ConfigMap.
func FromConfigMap(cm *corev1.ConfigMap) (Identity, error) {
	id := Identity{ID: cm.Data[clusterIDKey], Name: cm.Data[clusterNameKey], Labels: map[string]string{}}
	if err := ValidateClusterID(id.ID); err != nil {
		return Identity{}, fmt.Errorf("cluster identity ConfigMap %s/%s: %w; reinstall with 'stretchctl install' after restoring the original ID", cm.Namespace, cm.Name, err)
	}
	if raw := cm.Data[clusterLabelsKey]; raw != "" {
		if err := yaml.Unmarshal([]byte(raw), &id.Labels); err != nil {
			return Identity{}, fmt.Errorf("cluster identity ConfigMap %s/%s: key %s is not a map of labels: %w", cm.Namespace, cm.Name, clusterLabelsKey, err)
		}
	}
	return id, nil
}

// ConfigMap encodes the identity as the ConfigMap that holds it.
func (id Identity) ConfigMap() *corev1.ConfigMap {
	labels, _ := yaml.Marshal(id.Labels) // a map of strings always marshals
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Namespace: wellknown.SystemNamespace, Name: wellknown.IdentityConfigMapName, Labels: map[string]string{"app.kubernetes.io/part-of": "stretch"}},
		Data: map[string]string{
			clusterIDKey:     id.ID,
			clusterNameKey:   id.Name,
			clusterLabelsKey: string(labels),
		},
	}
}

// Resolve returns the identity to install: the existing cluster ID when the
// cluster already has one (it never changes), otherwise a new UUID. The name
// of an existing identity cannot change: peers know the cluster by it. nil
// labels keep the existing identity's labels; an empty map removes them.
func Resolve(existing *corev1.ConfigMap, name string, labels map[string]string) (Identity, error) {
	if err := ValidateClusterName(name); err != nil {
		return Identity{}, err
	}
	id := Identity{ID: uuid.NewString(), Name: name, Labels: maps.Clone(labels)}
	if id.Labels == nil {
		id.Labels = map[string]string{}
	}
	if existing != nil {
		prev, err := FromConfigMap(existing)
		if err != nil {
			return Identity{}, err
		}
		if prev.Name != name {
			return Identity{}, &NameMismatchError{Existing: prev, Wanted: name}
		}
		id.ID = prev.ID
		if labels == nil {
			id.Labels = prev.Labels
		}
	}
	return id, nil
}

// NameMismatchError is Resolve's refusal to rename a cluster: its peers know
// it by Existing.Name.
type NameMismatchError struct {
	// Existing is the identity the cluster has.
	Existing Identity
	// Wanted is the name that was asked for.
	Wanted string
}

func (e *NameMismatchError) Error() string {
	return fmt.Sprintf("this cluster is already installed as %q (cluster ID %s) and its peers know it by that name, not %q: install again with --cluster-name %s, or run 'stretchctl uninstall' first to start over with a new identity",
		e.Existing.Name, e.Existing.ID, e.Wanted, e.Existing.Name)
}

// Check reports, without writing, why Ensure(ctx, c, name, ...) would be
// refused: an invalid name, an unreadable identity or one under another name.
func Check(ctx context.Context, c client.Reader, name string) error {
	existing, err := read(ctx, c)
	if err != nil {
		return err
	}
	_, err = Resolve(existing, name, nil)
	return err
}

// Ensure gives the cluster c talks to the identity name with labels: it
// creates the identity ConfigMap with a new cluster ID when there is none, or
// updates its labels, keeping its cluster ID for ever; an identity under
// another name is refused with a *NameMismatchError. created says whether
// this call made the cluster ID. Writes use optimistic concurrency, so that
// callers racing (two manager replicas, an install) agree on one cluster ID.
// The namespace wellknown.SystemNamespace must exist.
func Ensure(ctx context.Context, c client.Client, name string, labels map[string]string) (id Identity, created bool, err error) {
	racing := func(err error) bool { return apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) }
	err = retry.OnError(retry.DefaultRetry, racing, func() error {
		existing, err := read(ctx, c)
		if err != nil {
			return err
		}
		if id, err = Resolve(existing, name, labels); err != nil {
			return err
		}
		want := id.ConfigMap()
		if existing == nil {
			if err := c.Create(ctx, want); err != nil {
				if apierrors.IsNotFound(err) {
					return fmt.Errorf("creating the cluster identity %s: namespace %s does not exist: create it first (helm install --namespace %s --create-namespace, or 'stretchctl install')", Key, wellknown.SystemNamespace, wellknown.SystemNamespace)
				}
				return wrapWrite("creating", err)
			}
			created = true
			return nil
		}
		if maps.Equal(existing.Data, want.Data) {
			return nil
		}
		// existing carries its resourceVersion: a concurrent write conflicts.
		existing.Data = want.Data
		return wrapWrite("updating", c.Update(ctx, existing))
	})
	if err != nil {
		return Identity{}, false, err
	}
	return id, created, nil
}

// wrapWrite wraps a failed write of the identity; AlreadyExists and Conflict
// stay detectable for Ensure's retry.
func wrapWrite(verb string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s the cluster identity %s: %w", verb, Key, err)
}

// read returns the identity ConfigMap, nil when there is none.
func read(ctx context.Context, c client.Reader) (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, Key, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the cluster identity %s: %w", Key, err)
	}
	return cm, nil
}

// ValidateClusterID checks that id is a lower-case UUID.
func ValidateClusterID(id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return fmt.Errorf("cluster ID %q is not a lower-case UUID (36 characters, e.g. 0b8e9a5c-3d1f-4c2e-9a7b-5f6d4e3c2b1a)", id)
	}
	return nil
}

// ValidateClusterName checks that name can name a RemoteCluster and a virtual node.
func ValidateClusterName(name string) error {
	if name == "" {
		return fmt.Errorf("cluster name is empty: pass --cluster-name, e.g. --cluster-name provider-eu")
	}
	// The virtual node is "stretch-<name>" and is also a label value.
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return fmt.Errorf("cluster name %q is not valid: %s", name, strings.Join(errs, "; "))
	}
	if max := validation.DNS1123LabelMaxLength - len("stretch-"); len(name) > max {
		return fmt.Errorf("cluster name %q is %d characters long: at most %d fit in the virtual node name stretch-<name>", name, len(name), max)
	}
	return nil
}

// ParseLabels parses "k=v,k2=v2" into labels, checking keys and values like
// the API server does. An empty string gives no labels.
func ParseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return labels, nil
	}
	for _, pair := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("cluster label %q is not of the form key=value (e.g. --cluster-labels region=eu,provider=aws)", pair)
		}
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("cluster label key %q is not valid: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("cluster label %s: value %q is not valid: %s", k, v, strings.Join(errs, "; "))
		}
		if _, dup := labels[k]; dup {
			return nil, fmt.Errorf("cluster label key %q is given twice", k)
		}
		labels[k] = v
	}
	return labels, nil
}

// FormatLabels is the inverse of ParseLabels, with keys sorted.
func FormatLabels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	pairs := make([]string, len(keys))
	for i, k := range keys {
		pairs[i] = k + "=" + labels[k]
	}
	return strings.Join(pairs, ",")
}

// IDCache loads the cluster ID once, on first use: it never changes, and
// components that start before 'stretchctl install' must not fail to start.
type IDCache struct {
	// Reader reads the identity ConfigMap, uncached.
	Reader client.Reader

	mu sync.Mutex
	id string
}

// ClusterID returns the cluster ID, loading it the first time.
func (c *IDCache) ClusterID(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == "" {
		id, err := Load(ctx, c.Reader)
		if err != nil {
			return "", err
		}
		c.id = id.ID
	}
	return c.id, nil
}
