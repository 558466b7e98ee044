package v1alpha1

import corev1 "k8s.io/api/core/v1"

// PodOffloadedCondition is the condition of a home pod, bound to a virtual
// node, that says while False why the provider refused to run it: the
// provider's Pod Security level, a limit of its TenantPolicy, a priority
// class it does not allow, one of its admission webhooks. The home cluster's
// virtual kubelet sets it, and removes it once the remote pod exists: from
// then on the pod's status is the remote pod's. It is public because users
// see it (kubectl describe pod) and wait on it
// (kubectl wait --for=condition=stretch.dev/Offloaded=false).
const PodOffloadedCondition corev1.PodConditionType = "stretch.dev/Offloaded"

// RefusedByProviderReason is the reason of a False PodOffloadedCondition, and
// of the Warning event the virtual kubelet records with it, when the provider
// refused the remote pod; the message quotes the provider's words. The pod
// stays Pending: it is tried again at once when it changes, and periodically
// otherwise, since the provider's admin may lift the refusal.
const RefusedByProviderReason = "RefusedByProvider"
