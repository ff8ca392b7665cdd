package fleet

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// Peering (AWSMultiOptions.Peered): the regions' VPCs joined by VPC
// peering with DNS resolution on. One more namespace, the router, has a
// leg on every region's bridge at the region's .253 and forwards between
// them; every instance routes the other regions' subnets through its own
// region's leg, so the instances reach each other's private addresses,
// from their private addresses, with the security groups still enforced
// in each namespace. The resolver then answers an instance's public name
// with its private address in every region (peering's DNS resolution);
// the public proxy stays for the askers outside. Peered traffic takes no
// inter-region delay: the proxy is not on its path.

// peerHost is the router's host number in every region's subnet.
const peerHost = 253

// peer builds the router. It is called before any instance exists.
func (f *faithfulNet) peer(ctx context.Context, regions []string) error {
	first := f.labs[regions[0]]
	router, err := first.namespace(ctx, first.net.address(peerHost))
	if err != nil {
		return fmt.Errorf("the peering router: %w", err)
	}
	for k, r := range regions[1:] {
		lab := f.labs[r]
		leg := fmt.Sprintf("eth%d", k+1)
		end := hostName(lab.n, peerHost)
		if err := f.runIP(ctx,
			[]string{"link", "add", end, "type", "veth", "peer", "name", leg, "netns", router},
			[]string{"link", "set", end, "master", bridgeName(lab.n), "up"},
			[]string{"-n", router, "addr", "add", lab.net.address(peerHost) + "/24", "dev", leg},
			[]string{"-n", router, "link", "set", leg, "up"},
		); err != nil {
			return fmt.Errorf("the peering router's leg in %s: %w", r, err)
		}
	}
	cmd := exec.CommandContext(ctx, f.ip, "netns", "exec", router, "sh", "-c", "echo 1 >/proc/sys/net/ipv4/ip_forward")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("forwarding in the peering router %s: %v: %s", router, err, strings.TrimSpace(string(out)))
	}
	f.mu.Lock()
	f.router = router
	f.mu.Unlock()
	f.log.Info("regions peered", "router", router, "regions", regions)
	return nil
}

// routePeers routes, in namespace ns of region, the other regions'
// subnets through the router.
func (f *faithfulNet) routePeers(ctx context.Context, ns, region string) error {
	var cmds [][]string
	for r, lab := range f.labs {
		if r != region {
			cmds = append(cmds, []string{"-n", ns, "route", "add", lab.net.String(), "via", f.labs[region].net.address(peerHost)})
		}
	}
	slices.SortFunc(cmds, func(a, b []string) int { return strings.Compare(a[4], b[4]) })
	if err := f.runIP(ctx, cmds...); err != nil {
		return fmt.Errorf("the routes to the peered regions in %s: %w", ns, err)
	}
	return nil
}
