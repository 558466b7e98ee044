package virtualkubelet

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"stretch.dev/stretch/api/wellknown"
)

const (
	// TokenLabelValue is the value of wellknown.ReflectedLabel on token
	// Secrets, which the object reflection leaves alone.
	TokenLabelValue = "token"

	// tokenLifetime is what the home cluster is asked for; a token is
	// renewed after 80% of its life, as the kubelet does.
	tokenLifetime = time.Hour
	// DefaultTokenCheck is how often token Secrets are looked at.
	DefaultTokenCheck = time.Minute
)

// isToken reports whether obj is a token Secret of the home cluster homeClusterID.
func isToken(obj metav1.Object, homeClusterID string) bool {
	l := obj.GetLabels()
	return l[wellknown.ReflectedLabel] == TokenLabelValue && l[wellknown.OriginClusterIDLabel] == homeClusterID
}

// ensureToken makes the twin's Secret for ref hold a valid home token, the
// home CA and the home namespace; renew forces a new token.
func (k *Kubelet) ensureToken(ctx context.Context, t *twin, ref tokenRef, renew bool) error {
	name := ref.secretName()
	cur, err := t.secrets.Secrets(t.name).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if cur != nil && !isToken(cur, k.HomeClusterID) {
		return k.foreignSecret(t.name, name)
	}
	if cur != nil && !renew && !dueForRefresh(cur, time.Now()) {
		return nil
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(tokenLifetime.Seconds()))}}
	if ref.Audience != "" {
		req.Spec.Audiences = []string{ref.Audience}
	}
	tok, err := k.Home.CoreV1().ServiceAccounts(t.homeNamespace).CreateToken(ctx, ref.ServiceAccount, req, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("requesting a token of service account %s/%s: %w", t.homeNamespace, ref.ServiceAccount, err)
	}
	ca := ""
	if cm, err := k.homeConfigMaps.ConfigMaps(t.homeNamespace).Get(rootCAConfigMap); err == nil {
		ca = cm.Data[CACertKey]
	}
	issued := time.Now()
	refresh := issued.Add(time.Duration(float64(tok.Status.ExpirationTimestamp.Sub(issued)) * 0.8))
	labels := originLabels(k.HomeClusterID, t.homeNamespace)
	labels[wellknown.ReflectedLabel] = TokenLabelValue
	want := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: t.name, Labels: labels, Annotations: map[string]string{
			wellknown.TokenRefreshAnnotation:        refresh.UTC().Format(time.RFC3339),
			wellknown.TokenServiceAccountAnnotation: ref.ServiceAccount,
			wellknown.TokenAudienceAnnotation:       ref.Audience,
		}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{TokenKey: []byte(tok.Status.Token), CACertKey: []byte(ca), NamespaceKey: []byte(t.homeNamespace)},
	}
	secrets := k.provider.CoreV1().Secrets(t.name)
	if cur == nil {
		_, err = secrets.Create(ctx, want, metav1.CreateOptions{FieldManager: wellknown.VirtualKubeletComponent})
		if apierrors.IsAlreadyExists(err) {
			// The cache lags behind another sync of a pod with the same
			// service account, which has just created it with a fresh
			// token: fine if it is ours.
			var live *corev1.Secret
			if live, err = secrets.Get(ctx, name, metav1.GetOptions{}); err == nil && !isToken(live, k.HomeClusterID) {
				err = k.foreignSecret(t.name, name)
			}
		}
	} else {
		want.ResourceVersion = cur.ResourceVersion
		_, err = secrets.Update(ctx, want, metav1.UpdateOptions{FieldManager: wellknown.VirtualKubeletComponent})
	}
	k.countError("token", err)
	return err
}

// foreignSecret is the error for a Secret with a token Secret's name that
// Stretch did not create.
func (k *Kubelet) foreignSecret(twin, name string) error {
	return fmt.Errorf("secret %s/%s on provider %s was not created by Stretch; delete it so that the token can be reflected", twin, name, k.ProviderName)
}

// dueForRefresh reports whether a token Secret's token is past 80% of its
// life (or its annotation is unreadable).
func dueForRefresh(s *corev1.Secret, now time.Time) bool {
	at, err := time.Parse(time.RFC3339, s.Annotations[wellknown.TokenRefreshAnnotation])
	return err != nil || !now.Before(at)
}

// refreshTokens renews the token Secrets due for it while a pod of the
// peering mounts them, creates again those deleted behind our back, and
// deletes those no pod mounts any more.
func (k *Kubelet) refreshTokens(ctx context.Context) {
	tick := time.NewTicker(k.TokenCheck)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, t := range k.twins.all() {
			if !t.hasSynced() {
				continue
			}
			k.refreshTwinTokens(ctx, t, time.Now())
		}
	}
}

func (k *Kubelet) refreshTwinTokens(ctx context.Context, t *twin, now time.Time) {
	used := map[string]tokenRef{}
	pods, _ := k.homePods.Pods(t.homeNamespace).List(everything)
	for _, p := range pods {
		if !live(p) {
			continue
		}
		for _, ref := range tokensOf(p) {
			used[ref.secretName()] = ref
		}
	}
	secrets, _ := t.secrets.Secrets(t.name).List(everything)
	held := map[string]bool{}
	for _, s := range secrets {
		if !isToken(s, k.HomeClusterID) {
			continue
		}
		held[s.Name] = true
		ref, inUse := used[s.Name]
		switch {
		case !inUse:
			err := k.provider.CoreV1().Secrets(t.name).Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(s.UID))})
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				k.countError("token", err)
				k.Log.Error(err, "deleting an unused token Secret", "twin", t.name, "secret", s.Name)
			}
		case dueForRefresh(s, now):
			if err := k.ensureToken(ctx, t, ref, true); err != nil {
				k.Log.Error(err, "renewing a token Secret", "twin", t.name, "secret", s.Name)
			}
		}
	}
	for name, ref := range used {
		if !held[name] {
			if err := k.ensureToken(ctx, t, ref, false); err != nil {
				k.Log.Error(err, "creating a token Secret again", "twin", t.name, "secret", name)
			}
		}
	}
}
