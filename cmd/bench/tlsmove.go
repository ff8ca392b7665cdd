package main

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcd-appliance/etcd-appliance/internal/fleet"
)

// The move of a running plaintext group of 3 to TLS (docs/operations.md,
// "Moving between plaintext and TLS"), under a plaintext client writing
// throughout: how long from the first restart until every peer URL is
// https, and the longest write gap, next to a plain rolling restart of the
// same kind of group (the same three restarts, no move) in the same run.

// plaintextArgs undo the fleet's --tls auto flags (a plaintext instance of
// a TLS group); moveArgs are an instance's flags for the move.
var (
	plaintextArgs = []string{"--tls", "off", "--tls-ca-dir="}
	moveArgs      = []string{"--tls-plaintext-clients"}
)

func measureTLSMove(ctx context.Context, binary string, runs int) ([]figure, error) {
	moved := figure{name: "running plaintext group of 3 restarted with --tls auto, one at a time → every peer URL https", target: "—", unit: "s"}
	movedGap := figure{name: "… its longest client write gap (a plaintext writer throughout)", target: "—", unit: "s"}
	rolled := figure{name: "reference: plaintext group of 3 restarted one at a time, no move → 3 healthy voters", target: "—", unit: "s"}
	rolledGap := figure{name: "reference: … its longest client write gap", target: "—", unit: "s"}
	for i := range runs {
		for _, move := range tlsOrder(i) {
			took, g, err := measureTLSMoveRun(ctx, binary, move)
			if err != nil {
				return nil, fmt.Errorf("tls move %v, run %d: %w", move, i, err)
			}
			d, dg := &rolled, &rolledGap
			if move {
				d, dg = &moved, &movedGap
			}
			d.samples = append(d.samples, took.Seconds())
			dg.samples = append(dg.samples, g.length().Seconds())
			log.Printf("tls move %v: run %d done: %s, longest gap %s", move, i, took.Round(time.Millisecond), g)
		}
	}
	moved.note = "from the first restart; each member switches its peer URL in turn (membership lock, every other member a healthy voter, leadership handed over), about a second down each"
	movedGap.note = "a write caught in a leadership hand-over waits out the writer's deadline"
	return []figure{moved, rolled, movedGap, rolledGap}, nil
}

// measureTLSMoveRun starts a plaintext group of 3 and restarts its
// instances one at a time under a plaintext writer: with the move's flags
// (move), timed until every peer URL is https, or as they were, timed until
// 3 healthy voters.
func measureTLSMoveRun(ctx context.Context, binary string, move bool) (time.Duration, gap, error) {
	g, done, err := newGroupWith(fleet.Options{Binary: binary, Args: applianceArgs, TLS: true})
	if err != nil {
		return 0, gap{}, err
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	insts, err := g.LaunchNWith(ctx, 3, plaintextArgs...)
	if err != nil {
		return 0, gap{}, err
	}
	if _, err := g.WaitConverged(ctx, 3); err != nil {
		return 0, gap{}, err
	}
	var urls []string
	for _, inst := range insts {
		urls = append(urls, inst.ClientURL())
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: urls, DialTimeout: 2 * time.Second})
	if err != nil {
		return 0, gap{}, err
	}
	defer c.Close()
	w := startGapWriter(ctx, c)
	defer w.stop()
	start := time.Now()
	for _, inst := range insts {
		if err := g.Stop(ctx, inst.ID); err != nil {
			return 0, gap{}, err
		}
		if move {
			if err := g.SetArgs(inst.ID, moveArgs...); err != nil {
				return 0, gap{}, err
			}
		}
		if err := g.Start(ctx, inst.ID); err != nil {
			return 0, gap{}, err
		}
	}
	err = fleet.Poll(ctx, 50*time.Millisecond, func() (bool, string) {
		if !move {
			st, err := g.Status(ctx)
			if err != nil {
				return false, err.Error()
			}
			return len(st.Members) == 3 && st.HealthyVoters() == 3, fleet.Summarize(st)
		}
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		defer rcancel()
		resp, err := c.MemberList(rctx)
		if err != nil {
			return false, err.Error()
		}
		https := 0
		for _, m := range resp.Members {
			if len(m.PeerURLs) == 1 && strings.HasPrefix(m.PeerURLs[0], "https://") {
				https++
			}
		}
		return https == 3, fmt.Sprintf("%d of 3 peer URLs https", https)
	})
	took := time.Since(start)
	if err != nil {
		return 0, gap{}, err
	}
	return took, w.stop(), nil
}
