// Package charts embeds the Stretch Helm chart (charts/stretch) so that
// stretchctl installs exactly the chart of its own commit: Load gives it to
// Helm's install and upgrade actions, Render renders it as 'helm template'
// does, for an install without Helm (a manager outside the cluster).
package charts

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	v2util "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// all: the chart has a .helmignore, which a plain pattern would skip.
//
//go:embed all:stretch
var files embed.FS

const (
	// chartDir is the chart's directory in files.
	chartDir = "stretch"
	// ReleaseName is the Helm release the chart is installed as, and the
	// release Render renders (its app.kubernetes.io/instance label).
	ReleaseName = "stretch"
	// KubernetesVersion is the cluster version Render renders for
	// (.Capabilities.KubeVersion): the version Stretch is built against.
	KubernetesVersion = "v1.37.2"
)

// installOrder is Helm's install order with the CustomResourceDefinitions
// first: every other object may depend on them, and none of them on another.
var installOrder = func() releaseutil.KindSortOrder {
	order := releaseutil.KindSortOrder{"CustomResourceDefinition"}
	for _, kind := range releaseutil.InstallOrder {
		if kind != "CustomResourceDefinition" {
			order = append(order, kind)
		}
	}
	return order
}()

// Load returns the embedded chart, a new copy on each call: Helm's actions
// may change the chart they are given.
func Load() (*chartv2.Chart, error) {
	var buffered []*archive.BufferedFile
	err := fs.WalkDir(files, chartDir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		buffered = append(buffered, &archive.BufferedFile{Name: strings.TrimPrefix(name, chartDir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the embedded chart %s: %w", chartDir, err)
	}
	chrt, err := loader.LoadFiles(buffered)
	if err != nil {
		return nil, fmt.Errorf("loading the embedded chart %s: %w", chartDir, err)
	}
	return chrt, nil
}

// Render renders the chart with values over its defaults for a release
// ReleaseName in namespace, the way 'helm template' does: values coalesced
// and checked against values.schema.json, templates rendered with Helm's
// engine for a Kubernetes KubernetesVersion cluster, hooks-free manifests in
// install order (CustomResourceDefinitions first, then ServiceAccounts,
// ClusterRoles and bindings, Services, the Deployment, then kinds Helm does
// not know, such as RuntimeClass). NOTES.txt and empty documents are left
// out. The namespace itself is not among the objects: create it first.
//
// Errors are Helm's: a value the schema refuses is named by its path, a
// failed check of the chart (e.g. the wrong namespace) by its message.
func Render(values map[string]any, namespace string) ([]*unstructured.Unstructured, error) {
	chrt, err := Load()
	if err != nil {
		return nil, err
	}
	caps := common.DefaultCapabilities.Copy()
	kubeVersion, err := common.ParseKubeVersion(KubernetesVersion)
	if err != nil {
		return nil, fmt.Errorf("parsing Kubernetes version %s: %w", KubernetesVersion, err)
	}
	caps.KubeVersion = *kubeVersion
	if c := chrt.Metadata.KubeVersion; c != "" && !v2util.IsCompatibleRange(c, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart %s requires Kubernetes %s, not %s", chrt.Name(), c, caps.KubeVersion.String())
	}
	if values == nil {
		values = map[string]any{}
	}
	options := common.ReleaseOptions{Name: ReleaseName, Namespace: namespace, Revision: 1, IsInstall: true}
	top, err := chartutil.ToRenderValuesWithSchemaValidation(chrt, values, options, caps, false)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", chrt.Name(), err)
	}
	rendered, err := engine.Engine{}.RenderWithContext(context.Background(), chrt, top)
	if err != nil {
		return nil, fmt.Errorf("rendering chart %s: %w", chrt.Name(), err)
	}
	for name := range rendered {
		if path.Base(name) == "NOTES.txt" {
			delete(rendered, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(rendered, caps.APIVersions, installOrder)
	if err != nil {
		return nil, fmt.Errorf("splitting the manifests of chart %s: %w", chrt.Name(), err)
	}
	if len(hooks) > 0 {
		// Render applies objects once; a hook would need Helm's hook runner.
		return nil, fmt.Errorf("chart %s has hooks (%s in %s), which Render does not run: install it with Helm", chrt.Name(), hooks[0].Kind, hooks[0].Path)
	}
	objs := make([]*unstructured.Unstructured, 0, len(manifests))
	for _, m := range manifests {
		obj := map[string]any{}
		if err := yaml.Unmarshal([]byte(m.Content), &obj); err != nil {
			return nil, fmt.Errorf("decoding %s of chart %s: %w", m.Name, chrt.Name(), err)
		}
		if len(obj) == 0 {
			continue // a document of comments only
		}
		u := &unstructured.Unstructured{Object: obj}
		if u.GetAPIVersion() == "" || u.GetKind() == "" || u.GetName() == "" {
			return nil, fmt.Errorf("%s of chart %s renders an object without apiVersion, kind or name:\n%s", m.Name, chrt.Name(), m.Content)
		}
		objs = append(objs, u)
	}
	return objs, nil
}
