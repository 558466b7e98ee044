// Package faults proves, against real API servers, that Stretch converges
// when things go wrong: API servers answering 409, 429 and
// 500 to a share of the requests, a provider answering 500 to everything for
// a while (with the requests counted, so that a hot loop fails the test), and
// two leader-elected managers whose leader is killed mid-work. Its tests are
// in the _test.go files; this file only gives the package a body of its own.
package faults
