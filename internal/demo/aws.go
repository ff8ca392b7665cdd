package demo

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/cluster"
	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// demoZone is the public hosted zone the AWS tour creates in moto.
const demoZone = "demo.example.org"

// runAWS is the tour on an Auto Scaling group in moto.
func (d *tour) runAWS(ctx context.Context) error {
	binary, err := d.prepare("etcd-appliance-demo-aws-")
	if err != nil {
		return err
	}
	d.printf("etcd-appliance demo --aws: an Auto Scaling group of %d instances in moto, the AWS emulator;", d.opts.Members)
	d.printf("each instance is an appliance process with --provider aws on the loopback address EC2 gave it,")
	d.printf("with its own instance metadata service (moto has none), publishing DNS in Route53 zone %s.", demoZone)
	d.printf("  directory   %s (moto.log, data, one log per instance)", d.dir)
	d.printf("")

	bootstrap := func(ctx context.Context) error { return d.bootstrapAWS(ctx, binary) }
	st, err := d.steps(ctx, bootstrap, d.replaceAWS)
	if err != nil {
		return err
	}
	if err := d.showRecords(ctx, st); err != nil {
		return err
	}
	d.printf("")
	d.printTable(st)
	if d.opts.Keep {
		d.keepAWS(ctx)
	}
	return nil
}

func (d *tour) bootstrapAWS(ctx context.Context, binary string) error {
	d.printf("1. Starting moto and creating in it a VPC, a launch template, the hosted zone and an Auto")
	d.printf("   Scaling group of %d. Each appliance finds its group through IMDS and the Auto Scaling", d.opts.Members)
	d.printf("   API, its peers through DescribeInstances, and one seeder creates the cluster.")
	start := time.Now()
	ag, err := fleet.NewAWS(ctx, fleet.AWSOptions{
		Binary:     binary,
		Dir:        d.dir,
		Args:       applianceArgs,
		Size:       d.opts.Members,
		HostedZone: demoZone,
		TLS:        d.opts.TLS,
	})
	if err != nil {
		return err
	}
	d.ag = ag
	d.view = ag
	d.running = func(ctx context.Context) []*fleet.Instance {
		insts, _ := ag.Running(ctx)
		return insts
	}
	d.printf("   moto at %s, group %s, subnet %s", ag.Moto().URL, ag.Name(), ag.Subnet())
	for _, inst := range ag.Instances() {
		d.printf("   %s at %s: appliance started", inst.ID, inst.Address)
	}
	st, err := d.waitBootstrap(ctx, start)
	if err != nil {
		return err
	}
	d.printf("   => cluster %s: %d healthy voters %.1fs after moto started", st.ClusterID, st.HealthyVoters(), d.res.BootstrapSeconds)
	d.printf("")
	return nil
}

func (d *tour) replaceAWS(ctx context.Context) error {
	running := d.running(ctx)
	victim, what, err := d.pickVictim(ctx, running)
	if err != nil {
		return err
	}
	d.printf("3. Terminating %s (%s, %s) through the Auto Scaling API, without decrementing the", victim.ID, victim.Address, what)
	d.printf("   desired capacity: the group launches a replacement with a new id and address. The leader")
	d.printf("   removes the stale member, the new instance joins as a learner and is promoted, and the")
	d.printf("   leader updates the records in Route53.")
	if err := d.ag.TerminateInASG(ctx, victim.ID, false); err != nil {
		return err
	}
	start := time.Now()
	stopFollow := d.ag.Follow(ctx)
	defer stopFollow()
	var repl *fleet.Instance
	err = fleet.Poll(ctx, 100*time.Millisecond, func() (bool, string) {
		for _, inst := range d.running(ctx) {
			if inst.ID != victim.ID && !slices.Contains(running, inst) {
				repl = inst
				return true, ""
			}
		}
		return false, "no replacement started yet"
	})
	if err != nil {
		return fmt.Errorf("replacement: %w", err)
	}
	d.printf("   the group launched %s at %s: appliance started", repl.ID, repl.Address)
	stop := d.showProgress(ctx, start)
	wctx, cancel := context.WithTimeout(ctx, replaceTimeout)
	st, err := d.ag.WaitConverged(wctx, d.opts.Members)
	if err == nil {
		err = d.waitRecords(wctx, st)
	}
	cancel()
	stop()
	if err != nil {
		return fmt.Errorf("replacement: %w", err)
	}
	d.res.ReplaceSeconds = seconds(time.Since(start))
	d.printf("   => %d healthy voters again and DNS updated %.1fs after the termination", st.HealthyVoters(), d.res.ReplaceSeconds)
	d.printf("")
	return nil
}

// waitRecords polls until Route53 holds the records of st's healthy voters.
func (d *tour) waitRecords(ctx context.Context, st cluster.ClusterStatus) error {
	want := cluster.WantedRecords(d.ag.DNSSpec(), st.Members)
	return fleet.Poll(ctx, 200*time.Millisecond, func() (bool, string) {
		have, err := d.ag.Records(ctx)
		if err != nil {
			return false, err.Error()
		}
		d.res.DNSRecords = have
		return cluster.EqualRecords(want, have), fmt.Sprintf("Route53 holds %v, want %v", have, want)
	})
}

// showRecords waits for and prints the cluster's records in Route53.
func (d *tour) showRecords(ctx context.Context, st cluster.ClusterStatus) error {
	d.printf("")
	d.printf("5. The records the leader published in Route53 (read back from moto), for the started,")
	d.printf("   healthy voters: SRV for etcd's --discovery-srv and clients, A for the cluster's name.")
	wctx, cancel := context.WithTimeout(ctx, keysTimeout)
	err := d.waitRecords(wctx, st)
	cancel()
	if err != nil {
		return fmt.Errorf("DNS: %w", err)
	}
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  NAME\tTYPE\tTTL\tVALUES")
	for _, r := range d.res.DNSRecords {
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\n", r.Name, r.Type, r.TTL, strings.Join(r.Values, ", "))
	}
	tw.Flush()
	return nil
}

// keepAWS leaves moto and the group running, following the group (a
// terminated instance's replacement gets its appliance), until ctx ends.
func (d *tour) keepAWS(ctx context.Context) {
	stop := d.ag.Follow(ctx)
	defer stop()
	running := d.running(ctx)
	aws := "aws --endpoint-url " + d.ag.Moto().URL
	d.printf("")
	d.printf("moto and the group keep running; the demo follows the group as EC2 would (a new instance's")
	d.printf("appliance starts, a terminated one's stops). moto answers any credentials:")
	d.printf("  export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=%s", fleet.AWSRegion)
	d.printf("  %s autoscaling describe-auto-scaling-groups --auto-scaling-group-names %s", aws, d.ag.Name())
	d.printf("  %s ec2 describe-instances --filters Name=tag:aws:autoscaling:groupName,Values=%s", aws, d.ag.Name())
	d.printf("  %s route53 list-resource-record-sets --hosted-zone-id %s", aws, d.ag.HostedZoneID())
	if len(running) > 0 {
		d.printf("  %s autoscaling terminate-instance-in-auto-scaling-group --instance-id %s --no-should-decrement-desired-capacity", aws, running[0].ID)
	}
	d.printf("  %s autoscaling update-auto-scaling-group --auto-scaling-group-name %s --min-size 5 --max-size 5 --desired-capacity 5", aws, d.ag.Name())
	d.printClientHints(running)
	d.printf("Press Ctrl-C to stop the group and moto.")
	<-ctx.Done()
}
