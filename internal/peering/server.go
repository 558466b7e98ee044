package peering

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ParseAPIServerURL checks an API server URL given to be put in issued
// credentials (--api-server-url): https://HOST[:PORT], nothing else. It
// returns the URL without a trailing slash.
func ParseAPIServerURL(s string) (string, error) {
	const form = "https://HOST[:PORT], e.g. https://203.0.113.10:6443 or https://api.provider-eu.example.com"
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL of the form %s: %w", s, form, err)
	}
	var problem string
	switch {
	case u.Scheme != "https":
		problem = "the scheme must be https, so that the token does not travel in clear"
	case u.Opaque != "" || u.Hostname() == "":
		problem = "it has no host"
	case u.User != nil:
		problem = "it must not hold a user or password"
	case u.Path != "" && u.Path != "/", u.RawQuery != "", u.ForceQuery, u.Fragment != "":
		problem = "it must not have a path, query or fragment"
	case u.Port() != "" && !validPort(u.Port()):
		problem = fmt.Sprintf("port %q is not a number from 1 to 65535", u.Port())
	case strings.HasSuffix(u.Host, ":"):
		problem = "the port after ':' is empty"
	}
	if problem != "" {
		return "", fmt.Errorf("%q is not of the form %s: %s", s, form, problem)
	}
	return "https://" + u.Host, nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}

// IsLoopback reports whether server, an API server URL (or a bare
// HOST[:PORT], as in a rest.Config), names a loopback address: 127.0.0.0/8,
// ::1 or localhost. Credentials that point there work only on the machine of
// the provider's API server, not from a home cluster elsewhere, nor from a
// manager in a pod.
func IsLoopback(server string) bool {
	if !strings.Contains(server, "://") {
		server = "https://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return false
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true // RFC 6761: localhost names resolve to loopback.
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
