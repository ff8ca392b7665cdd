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
	members := fs.Int("members", 3, "instances in the demo group (3-5 recommended)")
	keep := fs.Bool("keep", false, "leave the group running until Ctrl-C")
	onAWS := fs.Bool("aws", false, "tour an Auto Scaling group in moto (the AWS emulator; needs moto_server) instead of a local group: Route53 records, replacement through the Auto Scaling API")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *members < 1 || *members > 9 {
		fmt.Fprintln(os.Stderr, "etcd-appliance demo: --members must be between 1 and 9")
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance demo: %v\n", err)
		return 1
	}
	if err := demo.Run(ctx, demo.Options{Binary: self, Members: *members, Keep: *keep, Out: os.Stdout, AWS: *onAWS}); err != nil {
		fmt.Fprintf(os.Stderr, "etcd-appliance demo: %v\n", err)
		return 1
	}
	return 0
}
