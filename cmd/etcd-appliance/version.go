package main

import (
	"fmt"
	"io"
	"runtime"

	etcdversion "go.etcd.io/etcd/api/v3/version"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func bundledEtcdVersion() string { return etcdversion.Version }

func printVersion(w io.Writer) {
	fmt.Fprintf(w, "etcd-appliance %s\nbundled etcd %s\ngo %s %s/%s\n", version, bundledEtcdVersion(),
		runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// runEtcd is `etcd-appliance etcd`: the etcd server built from the pinned
// go.etcd.io/etcd/server/v3 module. etcdmain exits the process itself.
func runEtcd(args []string) int {
	etcdmain.Main(append([]string{"etcd"}, args...))
	return 0
}
