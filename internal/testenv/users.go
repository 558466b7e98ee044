package testenv

import (
	"fmt"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// AddUser returns a config that reaches the API server of s as user name in
// groups, authenticated by a client certificate (CertData, KeyData) that the
// API server's client CA signed: what the kube-apiserver's own kubelet client
// presents, to call what trusts that CA. The user has no rights until RBAC
// grants it some.
func (s *APIServer) AddUser(name string, groups ...string) (*rest.Config, error) {
	u, err := s.env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return nil, fmt.Errorf("client certificate of user %q on API server %s: %w", name, s.Name, err)
	}
	return u.Config(), nil
}
