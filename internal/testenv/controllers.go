package testenv

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"stretch.dev/stretch/internal/scheme"
)

// StartControllers runs a controller-runtime manager against cfg with the
// controllers that setup registers, until the test ends. Several may run in
// one test process, e.g. to restart a controller mid-test: cancel the
// returned function stops this one and waits for it.
func StartControllers(t testing.TB, cfg *rest.Config, setup func(ctrl.Manager) error) (stop func()) {
	t.Helper()
	return StartManager(t, cfg, nil, setup)
}

// StartManager is StartControllers with the manager's options adjusted
// first, e.g. to give it a webhook server.
func StartManager(t testing.TB, cfg *rest.Config, adjust func(*ctrl.Options), setup func(ctrl.Manager) error) (stop func()) {
	t.Helper()
	// As stretch-controller-manager does: no client-side rate limit.
	cfg = rest.CopyConfig(cfg)
	if cfg.QPS == 0 {
		cfg.QPS = -1
	}
	opts := ctrl.Options{
		Scheme:  scheme.New(),
		Metrics: metricsserver.Options{BindAddress: "0"},
		// Restarted controllers reuse their names in the same process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	}
	if adjust != nil {
		adjust(&opts)
	}
	mgr, err := ctrl.NewManager(cfg, opts)
	if err != nil {
		t.Fatalf("creating a manager: %v", err)
	}
	if err := setup(mgr); err != nil {
		t.Fatalf("setting up controllers: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("manager stopped with an error: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// FinalizeNamespaces stands in for kube-controller-manager's namespace
// controller, which envtest does not run: until the test ends, it deletes the
// pods, ConfigMaps, Secrets and Services of every namespace being deleted (at
// once, as there is no kubelet to end pods), then finalizes the namespace, so
// that deletions complete as in a cluster, without leaving those objects
// behind. (The e2e suite covers the real controller on kwokctl clusters.)
func (s *APIServer) FinalizeNamespaces(t testing.TB) {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatalf("clientset for %s: %v", s.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			list, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, nil
			}
			for i := range list.Items {
				ns := &list.Items[i]
				if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == 0 {
					continue
				}
				if !emptied(ctx, cs, ns.Name) {
					continue // at the next round
				}
				ns.Spec.Finalizers = nil
				_, _ = cs.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
			}
			return false, nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// emptied deletes the pods, ConfigMaps, Secrets and Services of namespace
// ns, and reports whether that worked.
func emptied(ctx context.Context, cs kubernetes.Interface, ns string) bool {
	now := metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}
	core := cs.CoreV1()
	for _, deleteAll := range []func() error{
		func() error { return core.Pods(ns).DeleteCollection(ctx, now, metav1.ListOptions{}) },
		func() error { return core.ConfigMaps(ns).DeleteCollection(ctx, now, metav1.ListOptions{}) },
		func() error { return core.Secrets(ns).DeleteCollection(ctx, now, metav1.ListOptions{}) },
		func() error {
			svcs, err := core.Services(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, svc := range svcs.Items {
				if err := core.Services(ns).Delete(ctx, svc.Name, now); err != nil && !apierrors.IsNotFound(err) {
					return err
				}
			}
			return nil
		},
	} {
		if err := deleteAll(); err != nil {
			return false
		}
	}
	return true
}
