// Package bench measures how fast Stretch offloads pods against baselines
// measured in the same run on the same clusters. Without -full it is a smoke
// run with tiny counts (part of 'make test', so that it cannot rot; no
// timing is asserted) and writes no file; 'make bench' runs it with -full
// and writes BENCHMARKS.md and BENCHMARKS.png, only when every scenario
// succeeded.
package bench
