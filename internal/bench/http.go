package main

import (
	"context"
	"net/http"
	"time"
)

func httpGet(ctx context.Context, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// notes explain the figures; they are part of the generated file.
const notes = `
## How to read these

- *Bootstrap* is timed from the moment the processes of a fresh group are started until every instance's
  /v1/status shows the group's size in healthy, started voters. The appliance creates the cluster with one member
  (only the seeder may create it, and only when every instance answered) and the others join one at a time as
  learners, which is what costs time over the static limit: safety first, a partition can never form a second
  cluster.
- *Crash restart* is timed from SIGKILL of the etcd child to the instance's /readyz answering 200 (its member a
  healthy voter again). It includes the restart backoff (200 ms first) and a new startup plan.
- *Replacement* is timed from the start of the replacement's appliance process, right after the old instance is
  marked terminated in the group file and killed, until the member list has exactly the 3 running instances as
  healthy voters: the stale member removed by the leader and the new one joined and promoted.
- *RSS* is VmRSS of each appliance process (the etcd child is a separate process and not counted).
`
