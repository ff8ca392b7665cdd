package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
	"github.com/etcd-appliance/etcd-appliance/internal/snapshot"
)

// TestAWSTotalLossRestoresFromS3 loses every instance of an Auto Scaling
// group at once: the leader had snapshotted to S3 (moto's), and the group's
// replacements restore the newest snapshot and form the cluster again, with
// every key the snapshot holds and new DNS records.
func TestAWSTotalLossRestoresFromS3(t *testing.T) {
	const bucket = "etcd-snapshots"
	store := "s3://" + bucket + "/clusters"
	g := newAWSGroupWith(t, fleet.AWSOptions{Size: 3, HostedZone: testZone,
		Args: []string{"--store", store, "--backup-interval", "1s", "--dr-grace", drGrace.String()}})
	ctx := testContext(t, 4*time.Minute)
	// The bucket comes after the group: the leader's first snapshots fail
	// and are tried again, as with a bucket created late by hand.
	if err := g.CreateBucket(ctx, bucket); err != nil {
		t.Fatal(err)
	}
	st := waitAWSConverged(t, ctx, g, 3)
	putKeys(t, ctx, g, "before", 100)
	c, err := g.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, err := c.Status(ctx, c.Endpoints()[0])
	c.Close()
	if err != nil {
		t.Fatal(err)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "testing")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "testing")
	s3store, err := snapshot.Open(ctx, store, snapshot.Options{Region: fleet.AWSRegion, Endpoint: g.Moto().URL})
	if err != nil {
		t.Fatal(err)
	}
	snap := waitSnapshot(t, ctx, s3store, g.Name(), status.Header.Revision)
	t.Logf("snapshot %s at revision %d in S3", snap.Key, snap.Revision)

	old := inService(t, ctx, g)
	for _, id := range old {
		if err := g.TerminateInASG(ctx, id, false); err != nil {
			t.Fatal(err)
		}
	}
	stop := g.Follow(ctx)
	defer stop()
	lost := time.Now()
	after := waitAWSConverged(t, ctx, g, 3)
	t.Logf("every instance replaced; 3 voters again %s later", time.Since(lost).Round(time.Millisecond))
	for _, id := range memberNames(after) {
		for _, o := range old {
			if id == o {
				t.Fatalf("member %s of a terminated instance in the restored cluster", id)
			}
		}
	}
	if after.ClusterID == st.ClusterID {
		t.Errorf("restored cluster kept id %s: a restore creates a new cluster", after.ClusterID)
	}
	waitAWSRecords(t, ctx, g, after)
	checkAWSKeysOnEach(t, ctx, g, "before", 100)
	var restorer string
	for _, id := range memberNames(after) {
		if strings.Contains(g.LogTail(id, 500), "snapshot restored") {
			restorer = id
		}
	}
	if restorer == "" {
		t.Fatal("no instance logged the restore")
	}
	// The newest snapshot is restored: as far as anyone knows, nothing is
	// lost, and the restore says so.
	if log := g.LogTail(restorer, 500); !strings.Contains(log, "lost_revisions=0") {
		t.Errorf("the restore does not report lost_revisions=0:\n%s", log)
	}
}
