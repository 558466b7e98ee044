// Package testenv starts the real Kubernetes control planes that Stretch's
// integration and e2e tests run against, bound to a test: several envtest
// API servers at once, kwokctl clusters (package kwok) stopped and with their
// logs kept when the test ends, controllers and manager processes on them,
// and object builders. What a program may use as well (the demo) lives in
// packages that do not import testing: kwok, faults and machine.
package testenv
