package testenv

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"stretch.dev/stretch/api/wellknown"
)

// Duplicates follows every remote pod of a home cluster on a provider, from
// the provider's own event history, and records every moment a home pod had
// more than one remote pod. The watch resumes from the last resourceVersion
// seen; a restarted API server has no history before its start (410), so
// then it lists again: only what came and went between the restart and that
// list, within a second, is not seen.
type Duplicates struct {
	mu      sync.Mutex
	found   []string
	events  int
	relists int
	err     error
	// origin maps each remote pod that exists to the UID of its home pod.
	origin map[string]string
}

// WatchDuplicates starts following the remote pods of home cluster homeID
// on the provider that cfg reaches, until the test ends.
func WatchDuplicates(t *testing.T, cfg *rest.Config, homeID string) *Duplicates {
	t.Helper()
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	selector := wellknown.OriginClusterIDLabel + "=" + homeID
	d := &Duplicates{}
	// list reads every remote pod afresh; it returns the resourceVersion to
	// watch from.
	list := func(ctx context.Context) (string, error) {
		pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return "", err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.origin = map[string]string{}
		for i := range pods.Items {
			d.seen(&pods.Items[i])
		}
		return pods.ResourceVersion, nil
	}
	rv, err := list(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Not t.Context(): the cleanup below runs after it is cancelled.
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for wctx.Err() == nil {
			if rv == "" {
				// Until the API server answers.
				_ = wait.PollUntilContextCancel(wctx, time.Second, true, func(ctx context.Context) (bool, error) {
					var err error
					rv, err = list(ctx)
					return err == nil, nil
				})
				if wctx.Err() != nil {
					return
				}
				d.mu.Lock()
				d.relists++
				d.mu.Unlock()
			}
			rw, err := watchtools.NewRetryWatcherWithContext(wctx, rv, &cache.ListWatch{
				WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
					opts.LabelSelector = selector
					return cs.CoreV1().Pods("").Watch(ctx, opts)
				},
			})
			if err != nil {
				d.mu.Lock()
				d.err = err
				d.mu.Unlock()
				return
			}
			for ev := range rw.ResultChan() {
				d.mu.Lock()
				switch p, ok := ev.Object.(*corev1.Pod); {
				case ev.Type == watch.Error && (apierrors.IsResourceExpired(apierrors.FromObject(ev.Object)) || apierrors.IsGone(apierrors.FromObject(ev.Object))):
					rv = "" // list again
				case !ok:
					d.err = fmt.Errorf("watching the remote pods: %v", ev.Object)
				case ev.Type == watch.Deleted:
					d.events++
					delete(d.origin, string(p.UID))
				default:
					d.events++
					d.seen(p)
				}
				d.mu.Unlock()
			}
			rw.Stop()
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return d
}

// seen records that remote pod p exists, and a duplicate if another remote
// pod of the same home pod exists too. d.mu is held.
func (d *Duplicates) seen(p *corev1.Pod) {
	home := p.Annotations[wellknown.OriginPodUIDAnnotation]
	d.origin[string(p.UID)] = home
	var same []string
	for remote, h := range d.origin {
		if h == home {
			same = append(same, remote)
		}
	}
	if len(same) > 1 {
		slices.Sort(same)
		d.found = append(d.found, fmt.Sprintf("home pod %s/%s (uid %s) had remote pods %s at resourceVersion %s",
			p.Labels[wellknown.OriginNamespaceLabel], p.Name, home, strings.Join(same, ", "), p.ResourceVersion))
	}
}

// ExpectNone checks that no home pod ever had two remote pods so far, and
// that the watch saw the whole history.
func (d *Duplicates) ExpectNone(t *testing.T, g gomega.Gomega) {
	d.mu.Lock()
	defer d.mu.Unlock()
	g.Expect(d.err).NotTo(gomega.HaveOccurred())
	g.Expect(d.found).To(gomega.BeEmpty(), "duplicate remote pods")
	t.Logf("no duplicate remote pod in %d remote pod events (%d lists again after API server restarts)", d.events, d.relists)
}
