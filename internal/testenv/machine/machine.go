// Package machine is what the test harnesses take from the machine they run
// on: the repository and the pinned tool binaries in its bin/ (built by 'make
// tools'), free ports on 127.0.0.1, and live processes. It does not import
// testing, so programs such as hack/demo use it too.
package machine
