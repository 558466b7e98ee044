// Package crash proves, on kwokctl clusters running the real
// stretch-controller-manager, that Stretch converges after crashes (issue
// 10, part 1): the home manager SIGKILLed at many points of offload, pod
// reflection, rollout and unoffload, then restarted, leaves no duplicate and
// no orphan; and a provider gone for good lets 'stretchctl unoffload --force'
// and 'stretchctl unpeer --force' finish, saying what they left on it. Its
// tests are in the _test.go files ('make test' runs a few kill points, 'make
// chaos' every one); this file only gives the package a body of its own.
package crash
