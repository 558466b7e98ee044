// Package tenancy proves, against real API servers, what docs/security.md promises
// between the tenants of a provider and between a provider and its home
// clusters: the credentials a provider issues to a home cluster reach only
// that home cluster's tenant namespace and twins (every verb on every served
// resource is tried), home clusters sharing a provider cannot see or touch
// each other, reserved namespaces are never twins, and a provider cannot make
// a home cluster delete or rewrite home objects. Its tests are in the
// _test.go files; this file only gives the package a body of its own.
package tenancy
