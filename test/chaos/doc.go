// Package chaos proves on kwokctl clusters (real etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok nodes) that Stretch
// converges when a provider's kube-apiserver is killed (SIGKILL) and started
// again during an offload, a pod rollout and an unoffload, and that nothing
// is lost or touched that should not be: a
// pre-existing provider namespace with a twin's name, and every other object
// on the provider that Stretch did not create, stay byte-for-byte the same
// (resourceVersion and uid included) after every scenario; no remote pod is
// ever duplicated, and none is left orphaned. It needs 'make tools' and
// 'make build'. Its tests are in the _test.go files; this file only gives the
// package a body of its own.
package chaos
