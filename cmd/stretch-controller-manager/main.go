// Command stretch-controller-manager runs Stretch's controllers on one cluster,
// in the home role, the provider role or both. The flags are those of
// manager.Options; everything else lives in internal/manager.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"stretch.dev/stretch/internal/manager"
)

func main() {
	opts := manager.DefaultOptions()
	// A fresh FlagSet rather than flag.CommandLine: controller-runtime's config
	// package registers its own --kubeconfig there in init.
	fs := flag.NewFlagSet("stretch-controller-manager", flag.ExitOnError)
	opts.BindFlags(fs)
	_ = fs.Parse(os.Args[1:]) // ExitOnError: a bad flag exits with usage
	if err := opts.Validate(); err != nil {
		// Exit 2, as the flag package does for a bad flag.
		fmt.Fprintln(os.Stderr, "stretch-controller-manager:", err)
		os.Exit(2)
	}

	if err := manager.Run(ctrl.SetupSignalHandler(), opts); err != nil {
		fmt.Fprintln(os.Stderr, "stretch-controller-manager:", err)
		os.Exit(1)
	}
}
