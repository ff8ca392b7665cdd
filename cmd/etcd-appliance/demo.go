package main

import (
	"context"
	"fmt"
	"os"

	"github.com/etcd-appliance/etcd-appliance/internal/demo"
)

// runDemo is `etcd-appliance demo`.
func runDemo(ctx context.Context, args []string) int {
	fs := newFlagSet("demo")
	members := fs.Int("members", 3, "instances in the demo group, 3-9")
	keep := fs.Bool("keep", false, "leave the group running until Ctrl-C")
	onAWS := fs.Bool("aws", false, "tour an Auto Scaling group in moto (the AWS emulator; needs moto_server) instead of a local group: Route53 records, replacement through the Auto Scaling API")
	withTLS := fs.Bool("tls", false, "run the group with --tls auto: mutual TLS on every port, the cluster CA in the demo's directory (or in moto's Secrets Manager with --aws)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	// The demo replaces an instance and counts the keys that survived: a
	// group of 1 or 2 loses its quorum, or its only copy, on the way.
	if *members < 3 || *members > 9 {
		fmt.Fprintf(os.Stderr, "etcd-appliance demo: --members %d is out of range: give 3 to 9 (the demo replaces an instance, which a group of fewer than 3 does not survive)\n", *members)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance demo: %v\n", err)
		return 1
	}
	if err := demo.Run(ctx, demo.Options{Binary: self, Members: *members, Keep: *keep, Out: os.Stdout, AWS: *onAWS, TLS: *withTLS}); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance demo: %v\n", err)
		return 1
	}
	return 0
}
