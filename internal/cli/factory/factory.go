// Package factory builds the clients of stretchctl from the kubectl-style
// flags --kubeconfig and --context, with errors that say how to fix them.
package factory

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"stretch.dev/stretch/internal/scheme"
)

// Timeout bounds every single request of stretchctl, so that an unreachable
// cluster fails fast instead of hanging.
const Timeout = 15 * time.Second

// Cluster names one cluster by kubeconfig and context.
type Cluster struct {
	// Kubeconfig is the kubeconfig path; empty means $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// Context is the kubeconfig context; empty means the current one.
	Context string
	// What is how messages refer to this cluster, e.g. "home cluster".
	What string
}

// BindFlags adds --<prefix>kubeconfig and --<prefix>context.
func (c *Cluster) BindFlags(fs *pflag.FlagSet, prefix, what string) {
	c.What = what
	fs.StringVar(&c.Kubeconfig, prefix+"kubeconfig", "", "path to the kubeconfig of the "+what+" (default $KUBECONFIG or ~/.kube/config)")
	fs.StringVar(&c.Context, prefix+"context", "", "kubeconfig context of the "+what+" (default the current context)")
}

// loader loads the kubeconfig as kubectl does, checking that an explicit
// one exists.
func (c *Cluster) loader() (clientcmd.ClientConfig, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if c.Kubeconfig != "" {
		if _, err := os.Stat(c.Kubeconfig); err != nil {
			return nil, fmt.Errorf("kubeconfig of the %s: %w: pass an existing file with --kubeconfig", c.What, err)
		}
		rules.ExplicitPath = c.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: c.Context}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides), nil
}

// Namespace is the namespace of the kubeconfig context, as kubectl uses it
// when -n is not given: "default" when the context names none.
func (c *Cluster) Namespace() (string, error) {
	loader, err := c.loader()
	if err != nil {
		return "", err
	}
	ns, _, err := loader.Namespace()
	if clientcmd.IsEmptyConfig(err) {
		return "", fmt.Errorf("no kubeconfig for the %s: pass --kubeconfig PATH or set KUBECONFIG", c.What)
	}
	if err != nil {
		return "", fmt.Errorf("reading the namespace of the kubeconfig context of the %s: %w: pass the namespace", c.What, err)
	}
	return ns, nil
}

// RESTConfig loads the rest config, checking that the kubeconfig exists.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	loader, err := c.loader()
	if err != nil {
		return nil, err
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, fmt.Errorf("no kubeconfig for the %s: pass --kubeconfig PATH or set KUBECONFIG", c.What)
		}
		return nil, fmt.Errorf("loading the kubeconfig of the %s: %w", c.What, err)
	}
	cfg.Timeout = Timeout
	cfg.UserAgent = "stretchctl"
	return cfg, nil
}

// RESTClientGetter loads the same kubeconfig and context for libraries that
// take kubectl's flags, such as Helm's actions.
func (c *Cluster) RESTClientGetter() genericclioptions.RESTClientGetter {
	flags := genericclioptions.NewConfigFlags(true)
	if c.Kubeconfig != "" {
		flags.KubeConfig = &c.Kubeconfig
	}
	if c.Context != "" {
		flags.Context = &c.Context
	}
	timeout := Timeout.String()
	flags.Timeout = &timeout
	return flags
}

// Client returns a client for the cluster after checking that its API server
// answers, so that no command starts writing to a cluster it cannot finish on.
func (c *Cluster) Client(ctx context.Context) (client.Client, *rest.Config, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("client for the %s: %w", c.What, err)
	}
	if _, err := dc.ServerVersion(); err != nil {
		return nil, nil, fmt.Errorf("cannot reach the %s at %s: %w: check that the API server is running and that the kubeconfig (--kubeconfig, --context) points at it", c.What, cfg.Host, err)
	}
	cl, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, nil, fmt.Errorf("client for the %s: %w", c.What, err)
	}
	return cl, cfg, nil
}

// IssuedClient reaches a provider with the credentials it issued to the home
// cluster, as the home controller does: the kubeconfig under key in the
// home-side Secret. It does not check reachability: a request says it.
func IssuedClient(secret *corev1.Secret, key string) (client.Client, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(secret.Data[key])
	if err != nil {
		return nil, fmt.Errorf("the Secret %s/%s holds no usable kubeconfig under key %s: %w", secret.Namespace, secret.Name, key, err)
	}
	cfg.Timeout, cfg.UserAgent = Timeout, "stretchctl"
	c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("client from Secret %s/%s: %w", secret.Namespace, secret.Name, err)
	}
	return c, nil
}
