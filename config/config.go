// Package config embeds the generated manifests (CRDs and RBAC) so that the
// binaries and the tests install exactly what `make generate` committed.
package config

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"path"
	"sort"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
)

//go:embed crd/*.yaml rbac/*.yaml
var manifests embed.FS

// CRDs returns Stretch's CustomResourceDefinitions, sorted by name.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	var crds []*apiextensionsv1.CustomResourceDefinition
	err := decodeDir("crd", func(dec *yaml.YAMLOrJSONDecoder) error {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); err != nil {
			return err
		}
		if crd.Name != "" {
			crds = append(crds, crd)
		}
		return nil
	})
	sort.Slice(crds, func(i, j int) bool { return crds[i].Name < crds[j].Name })
	return crds, err
}

// File returns one embedded manifest, e.g. "rbac/role.yaml".
func File(name string) ([]byte, error) { return manifests.ReadFile(name) }

func decodeDir(dir string, decode func(*yaml.YAMLOrJSONDecoder) error) error {
	entries, err := fs.ReadDir(manifests, dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := path.Join(dir, e.Name())
		data, err := manifests.ReadFile(name)
		if err != nil {
			return err
		}
		dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			err := decode(dec)
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("decoding embedded manifest %s: %w", name, err)
			}
		}
	}
	return nil
}
