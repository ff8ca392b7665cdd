package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "go.etcd.io/etcd/client/v3"
	_ "go.etcd.io/etcd/client/v3/concurrency"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
)

func main() { etcdmain.Main(os.Args) }
