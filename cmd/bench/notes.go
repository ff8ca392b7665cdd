package main

// notes explain the figures; they are part of the generated file.
const notes = `
## How to read these

- *Bootstrap* is timed from the moment the processes of a fresh group are started until every instance's
  /v1/status shows the group's size in healthy, started voters. Only the seeder may create the cluster, and only
  when every instance answered with the same view of the group; it then offers the whole agreed group as the
  initial membership and every instance starts etcd with it at once. The price of that safety over the static
  limit is one round of peer answers (one --startup-interval).
- *Crash restart* is timed from SIGKILL of the etcd child until a new etcd process of the instance answers a
  status request as a voter that knows its leader. It includes the restart backoff (200 ms first) and a new
  startup plan.
- *Replacement* is timed from the start of the replacement's appliance process, right after the old instance is
  marked terminated in the group file and killed, until the member list has exactly the 3 running instances as
  healthy voters: the stale member removed by the leader and the new one joined and promoted. Each replacement
  starts on a cluster left untouched for 6 s: etcd's --strict-reconfig-check refuses any membership change until
  the leader has been connected to its members for 5 s, so replacements closer together than that wait for etcd,
  not for the appliance. The first replacement of a just-created cluster pays those 5 s too.
- *RSS* is VmRSS of each appliance process (the etcd child is a separate process and not counted).
- *Steady-state AWS calls* are the requests (every attempt of a retried call) that a converged group of 3 with
  --provider aws and a hosted zone sends to moto through the harness's fault proxy, which counts them by API,
  over a window as long as the leader's DNS recheck period (so that its periodic Route53 read is counted), times
  the hours that window is. Production defaults but for --startup-interval. It is one sample per run of the bench.
- *Replacement through the ASG* is timed from the start of the replacement's appliance process (read from /proc)
  after TerminateInstanceInAutoScalingGroup (moto launches the replacement at once) until the 3 in-service
  instances are the healthy voters (in the view of the first instance that answers /v1/status) and Route53 lists
  exactly them. moto drops a terminated instance from the
  group's listing at once, where AWS lists it as Terminating for a while, so the stale member is removed only after
  --stale-grace (5 s here) rather than on sight: this figure carries the grace.
- *Recovery from a survivor*: a settled group of 3 loses two instances at once (terminated in the group file) and
  two new ones are launched. Timed from the expiry of --dr-grace (the survivor's "quorum lost for good" log line
  plus the grace, 5 s here) to the first write the survivor accepts, and to 3 healthy voters again. The survivor
  looks for a loss after 5 s without a leader and every 2 s after, stops etcd, starts it with
  --force-new-cluster until it leads, stops it again and restores its database as a new cluster with revisions
  bumped (so that no revision is reused); the new instances then join one at a time (etcd's 5 s rule between membership changes).
- *Restore from the store*: a group of 3 writes 1000 keys, its leader snapshots them to a file store, and every
  instance is replaced at once. Timed from the new group's processes' start to the first accepted write: the
  seeder restores the newest snapshot as a one-member cluster (no grace: nobody holds data).
- *100 MB*: 200 values of 512 KiB of random bytes. "backup" streams etcd's snapshot to disk, checks etcd's
  SHA-256 trailer and bbolt's integrity, and uploads it with its SHA-256 to a file store; "restore --from"
  fetches and verifies it and restores it with etcdutl into the data dir (revisions bumped by 10⁹).
- *Longest client write gap*: one client (clientv3, every member's client URL) writes one key as fast as it can,
  each write with a 1 s deadline and retried at once (10 ms apart after an error); the figure is the longest
  interval between two acknowledged writes (or between the last one and the writer's stop) while the scenario
  runs. Each scenario starts on a cluster left untouched for 6 s.
  - *Rolling upgrade*: a group of 3 launched with --etcd-binary of etcd 3.6.16 (built from the module proxy)
    has its instances terminated and replaced by instances of the bundled etcd one at a time, each step waiting
    for 3 healthy voters; the client's endpoints follow the group after each step. One sample is the whole
    upgrade. The local provider's termination is the machine disappearing (SIGKILL of the appliance and etcd,
    no drain: the group file has no lifecycle hook), so the step that terminates the leader costs an election.
  - *Leader's instance terminated*: the same termination of the leader of a group of 3, and its replacement,
    until 3 healthy voters; its reference is a static cluster whose leader is SIGKILLed, timed until a write
    after the kill is acknowledged and the two others are healthy.
  - *Planned drain of the leader* (§4.5) runs on moto with a termination lifecycle hook: the leader's IMDS says
    Terminated, its appliance (polling it every second) moves leadership to another member, removes its member,
    stops etcd and completes the hook (the fault proxy answers for moto); the group then terminates it. Its
    reference is a static cluster whose leader is moved to a follower by hand (MoveLeader) and then stopped with
    SIGTERM, timed until a write after the stop is acknowledged and the two others are healthy. The next row is
    the same run from the termination until the replacement moto launched is a voter and DNS lists the new set.
  - A write caught by a leadership change waits out its whole deadline: raft drops the proposals of a leader
    that hands over and of a member without a leader, and etcd does not answer them before the client's 1 s.
    So the gaps come in steps of that deadline: a SIGKILLed leader costs one deadline when the survivors elect
    a new leader within it (the election timeout is randomized between 1 and 2 s), else two; a handover costs
    none or one, depending on whether a write was in flight.
- *Idle cost*: a group of 3 with the default flags converges and is left untouched for 20 s (the convergence
  check's own /v1/status requests and the appliances' close watch after a change are over by then); then, over
  one minute (-idle-window), each etcd member's own counters are read before and after: every gRPC message it
  received (grpc_server_msg_received_total: one per unary call, one per message of a stream, such as a lease
  keep-alive) and its CPU (process_cpu_seconds_total), and each appliance's CPU (utime + stime of
  /proc/<pid>/stat). Nothing but the appliances talks to the members, so what a member receives is what the
  appliances ask of it: its own appliance's status looks (every 3 s while steady), the keep-alives of its
  lease in the housekeeper election (every 5 s), the cluster facts (every 30 s, from every appliance), and the
  housekeeper's cycles (every 15 s while steady; the holder's member receives most). The reference is a
  static etcd cluster of 3 started by hand and left idle for the same window: the CPU etcd spends with no
  appliance at all. *Private RSS* is what only the appliance process maps (Private_Clean + Private_Dirty of
  /proc/<pid>/smaps_rollup), read at the end of the window; VmRSS above also counts the executable's pages,
  which the etcd child (the same binary) shares.
- *Leader elections across regions*: a group of 2+1 members in two regions on the faithful network (each region
  a network namespace, members reached through their public names and addresses, security groups enforced; the
  harness's public proxy holds every byte between regions for half the round trip). One group with the default
  flags (the appliance measures the round trips to its peers before the cluster forms and derives heartbeat and
  election timeout from them) and one pinned to etcd's defaults run side by side, each with its leader moved to the
  region of one (so that every heartbeat and commit crosses the wire: with the leader in the region of two its
  quorum is in-region, and etcd's pre-vote keeps the far follower from starting elections), and a writer
  putting a key every 100 ms from outside the regions; the figure is the raft term's increase over the window (each
  election, won or not, raises it; pre-vote keeps a partitioned member from raising it alone), per hour. One sample
  per run of the bench. The proxy's delay is even, so "loss" rows also lose a share of the chunks between regions:
  each lost one arrives a TCP retransmission timeout later (the round trip plus 200 ms, doubled when lost again) and
  holds back the chunks after it, as a congested path between regions does to raft's sparse heartbeats.
- *TLS*: each run starts a fresh group of 3 with --tls auto and one with TLS off (which goes first alternates from
  run to run, so that the machine's noise hits both alike). Each is timed to 3 healthy voters as *Bootstrap* above;
  with TLS that includes the first appliance creating the cluster CA (ECDSA P-256) in the group's CA directory,
  every appliance issuing its member certificate, etcd's client and peer listeners and raft's peer connections
  with mutual TLS, and the fleet's status requests, each a new TLS connection with its user certificate. Both
  bootstrap rows are bimodal, TLS or not: etcd starting a new cluster first asks each peer whether the cluster
  exists already, and a peer whose listener is bound but not serving yet holds that question for etcd's bootstrap
  timeout (1 s a peer), so a start where the members come up in step takes about 2 s more; with few runs, read
  the ranges next to the medians. The group then runs untouched for 2 s and one clientv3 client (with the fleet's user certificate, every member's client
  URL, round robin) writes 200 puts of 64 B one after the other to warm up, then 2000 more, each timed; a run's
  p50 and p99 are of those 2000 (nearest rank). A put that reaches a follower goes to the leader over the peer
  connection, and every put is replicated to the followers, so writes cross both client and peer TLS. The
  handshakes happen once per connection, before the timed writes (the warm-up opens the client's; raft's are
  open since the bootstrap): what the write rows measure is the steady cost, encrypting and authenticating every
  request, reply and raft message on sessions whose mutual authentication was done at the handshake. The two
  stacks differ past the encryption too: etcd serves gRPC with TLS through Go's net/http HTTP/2 server (gRPC's
  ServeHTTP) and in plaintext through gRPC's own transport behind cmux, so the rows compare the two ways etcd
  serves, not the cipher alone. With 64 B values the cipher costs microseconds a put; the p99 of a run is its
  20 slowest puts of 2000, which a 2-core machine shared with other work sets more than either.
`
