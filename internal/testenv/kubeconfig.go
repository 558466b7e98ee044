package testenv

import (
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeconfigWithToken returns a kubeconfig that reaches the API server of s,
// trusting its serving certificate, and authenticates with a bearer token,
// e.g. a revoked or made-up one.
func (s *APIServer) KubeconfigWithToken(token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[s.Name] = &clientcmdapi.Cluster{Server: s.Config.Host, CertificateAuthorityData: s.Config.CAData}
	cfg.AuthInfos[s.Name] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[s.Name] = &clientcmdapi.Context{Cluster: s.Name, AuthInfo: s.Name}
	cfg.CurrentContext = s.Name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig with a token for %s: %w", s.Name, err)
	}
	return data, nil
}
